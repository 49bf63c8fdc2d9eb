using Keel.Cuda.Driver;
using Keel.Native.Devices;
using Keel.Native.Devices.Cpu;
using Keel.Native.Kernels;
using Keel.Native.Numerics;

namespace Keel.Native.Tests.Support;

/// <summary>
/// A kernel device whose kernels are recorded, not run: every op goes through the real launchers (argument checks,
/// grids, scratch from the device's workspace) to a runtime that keeps each launch's pointer arguments. Memory is zeroed
/// host memory and the GEMM does nothing, so a training step computes zeros, quickly, on any machine: the device for
/// tests of what a step launches and allocates, not of what it computes.
/// </summary>
internal sealed class RecordingKernelDevice : KernelDevice
{
    private readonly CpuDevice _host = new();

    public RecordingKernelDevice(int multiprocessors = 132) : base(new RecordingKernelRuntime(multiprocessors))
    {
    }

    /// <summary>The launches so far.</summary>
    public RecordingKernelRuntime Launches => (RecordingKernelRuntime)Runtime;

    public override DeviceKind Kind => DeviceKind.Emulated;

    public override string Name => "recording kernel device";

    public override DeviceBuffer Allocate(DType dtype, TensorShape shape)
    {
        var buffer = new DeviceBuffer(this, HostAllocation.Allocate(shape.ElementCount * dtype.SizeOf()), dtype, shape);
        _host.Clear(buffer);
        return buffer;
    }

    public override void CopyFromHost<T>(ReadOnlySpan<T> source, Tensor destination) => _host.CopyFromHost(source, destination);

    protected override void CopyToHostCore<T>(Tensor source, Span<T> destination) => _host.CopyToHost(source, destination);

    public override void Copy(Tensor source, Tensor destination) => _host.Copy(source, destination);

    public override void Clear(Tensor destination) => _host.Clear(destination);

    protected override void SynchronizeCore()
    {
    }

    public override void Gemm(Tensor a, bool transposeA, Tensor b, bool transposeB, Tensor c, float alpha = 1f, float beta = 0f)
    {
    }

    protected override void Dispose(bool disposing) => _host.Dispose();
}

/// <summary>
/// Takes launches without running them. Counting allocates nothing; with <see cref="RecordPointers"/> on, each launch's
/// name and pointer arguments are kept (for comparing the addresses of two steps).
/// </summary>
internal sealed class RecordingKernelRuntime(int multiprocessors) : IKernelRuntime
{
    public int MultiprocessorCount { get; } = multiprocessors;

    public KernelProfiler? Profiler { get; set; }

    public long Count { get; private set; }

    public bool RecordPointers { get; set; }

    public List<string> Pointers { get; } = [];

    public KernelFunction Load(KernelSpec spec, string entryPoint)
    {
        Assert.Contains(entryPoint, KernelSources.EntryPoints(spec.File));
        return new Recorded(spec, entryPoint, this);
    }

    private sealed unsafe class Recorded(KernelSpec spec, string name, RecordingKernelRuntime runtime) : KernelFunction(spec, name, runtime)
    {
        protected override void LaunchCore(in LaunchShape shape, ReadOnlySpan<KernelArgument> arguments, void** values)
        {
            runtime.Count++;
            if (!runtime.RecordPointers) return;
            var pointers = new List<string>();
            for (var i = 0; i < arguments.Length; i++)
                if (arguments[i].Kind == KernelParameterKind.Pointer) pointers.Add($"0x{*(ulong*)values[i]:x}");
            runtime.Pointers.Add($"{Name}({string.Join(", ", pointers)})");
        }
    }
}
