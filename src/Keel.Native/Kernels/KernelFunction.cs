using Keel.Cuda.Driver;

namespace Keel.Native.Kernels;

/// <summary>
/// One loaded entry point of a kernel specialization, ready to launch on the runtime that loaded it.
/// Launching allocates nothing: the caller passes its arguments as a span of <see cref="KernelArgument"/> values (a
/// collection expression on the stack), in the order of the kernel's parameters; the emulator checks their count,
/// sizes and kinds against the parameters the compiler saw.
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

    /// <summary>
    /// Queues the kernel with <paramref name="shape"/> and <paramref name="arguments"/> (one per kernel parameter, in
    /// order) and, when its runtime has a <see cref="IKernelRuntime.Profiler"/>, times the launch under its entry-point
    /// name with what it must move and compute (<paramref name="cost"/>; zero where the launcher does not count it).
    /// With profiling off this costs one null check.
    /// </summary>
    /// <exception cref="KernelLaunchException">
    /// Under emulation: the arguments do not match the kernel's parameters (count, size, or pointer, integer and float
    /// kinds), or the kernel failed.
    /// </exception>
    public unsafe void Launch(in LaunchShape shape, ReadOnlySpan<KernelArgument> arguments, in KernelCost cost = default)
    {
        // cuLaunchKernel's form: one pointer per parameter, to its value, which each argument holds at its start.
        var values = stackalloc void*[arguments.Length];
        fixed (KernelArgument* first = arguments)
        {
            for (var i = 0; i < arguments.Length; i++) values[i] = first + i;
            var profiler = _runtime.Profiler;
            if (profiler is null)
            {
                LaunchCore(shape, arguments, values);
                return;
            }
            var token = profiler.Begin();
            LaunchCore(shape, arguments, values);
            profiler.End(token, Name, cost);
        }
    }

    /// <summary>Queues the launch on the runtime: <paramref name="values"/>[i] points at the value of <paramref name="arguments"/>[i].</summary>
    protected abstract unsafe void LaunchCore(in LaunchShape shape, ReadOnlySpan<KernelArgument> arguments, void** values);

    /// <inheritdoc />
    public override string ToString() => $"{Name} ({Spec})";
}
