using Keel.Cuda.Driver;

namespace Keel.Native.Kernels;

/// <summary>
/// One loaded entry point of a kernel specialization, ready to launch on the runtime that loaded it.
/// Launching allocates nothing: the caller passes its arguments as a stack array of pointers to values,
/// laid out exactly as the kernel's parameters (as <c>cuLaunchKernel</c> takes them).
/// </summary>
public abstract class KernelFunction
{
    private readonly IKernelRuntime _runtime;

    /// <summary>Describes an entry point of <paramref name="spec"/> loaded on <paramref name="runtime"/>.</summary>
    protected KernelFunction(KernelSpec spec, string name, IKernelRuntime runtime)
    {
        Spec = spec;
        Name = name;
        _runtime = runtime;
    }

    /// <summary>The specialization the entry point belongs to.</summary>
    public KernelSpec Spec { get; }

    /// <summary>The entry point's name, such as <c>keel_optimizer_adamw</c>.</summary>
    public string Name { get; }

    /// <summary>
    /// Lets launches of this entry point use up to <paramref name="bytes"/> of dynamic shared memory. A GPU needs this
    /// opt-in above 48 KiB (up to its per-block limit, 227 KiB on sm_90), and the emulator holds launches to the same
    /// rule. Call it once after loading, not per launch.
    /// </summary>
    public virtual void AllowDynamicSharedMemory(int bytes) => ArgumentOutOfRangeException.ThrowIfNegative(bytes);

    /// <summary>Launches the kernel with <paramref name="shape"/>; <paramref name="args"/>[i] points at parameter i.</summary>
    public unsafe void Launch(in LaunchShape shape, void** args) => Launch(shape, args, default);

    /// <summary>
    /// Launches the kernel and, when its runtime has a <see cref="IKernelRuntime.Profiler"/>, times the launch
    /// under its entry-point name with what it must move and compute (<paramref name="cost"/>; zero where the
    /// launcher does not count it). With profiling off this costs one null check.
    /// </summary>
    public unsafe void Launch(in LaunchShape shape, void** args, in KernelCost cost)
    {
        var profiler = _runtime.Profiler;
        if (profiler is null)
        {
            LaunchCore(shape, args);
            return;
        }
        var token = profiler.Begin();
        LaunchCore(shape, args);
        profiler.End(token, Name, cost);
    }

    /// <summary>Queues the launch on the runtime.</summary>
    protected abstract unsafe void LaunchCore(in LaunchShape shape, void** args);

    /// <inheritdoc />
    public override string ToString() => $"{Name} ({Spec})";
}
