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

    /// <summary>A device whose runtime counts launches without keeping them (<see cref="RecordingKernelRuntime.Record"/> off).</summary>
    public RecordingKernelDevice(int multiprocessors = 132) : base(new RecordingKernelRuntime(multiprocessors) { Record = false })
    {
    }

    /// <summary>The launches so far.</summary>
    public RecordingKernelRuntime Recorder => (RecordingKernelRuntime)Runtime;

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
/// Takes launches without running them, and keeps each one (name, shape, the dynamic shared memory the launcher allowed,
/// the pointer arguments) while <see cref="Record"/> is on; with it off, a launch is only counted and allocates nothing.
/// </summary>
internal sealed class RecordingKernelRuntime(int multiprocessors = 132) : IKernelRuntime
{
    public int MultiprocessorCount { get; } = multiprocessors;

    /// <summary>sm_90's by default.</summary>
    public int MaxSharedMemoryPerBlockOptInBytes { get; init; } = 227 << 10;

    public KernelProfiler? Profiler { get; set; }

    /// <summary>Launches taken so far, recorded or not.</summary>
    public long Count { get; private set; }

    public bool Record { get; set; } = true;

    public List<RecordedLaunch> Launches { get; } = [];

    public KernelFunction Load(KernelSpec spec, string entryPoint)
    {
        Assert.Contains(entryPoint, KernelSources.EntryPoints(spec.File));
        return new Recorded(spec, entryPoint, this);
    }

    /// <summary>Asserts that every launch stays within what a GPU accepts: its dynamic shared memory within the function's limit, whole warps.</summary>
    public void AssertWithinLimits()
    {
        Assert.NotEmpty(Launches);
        foreach (var launch in Launches)
        {
            Assert.True(launch.Shape.SharedMemoryBytes <= launch.DynamicSharedLimit,
                        $"{launch.Name} asks for {launch.Shape.SharedMemoryBytes} bytes of dynamic shared memory; its limit is {launch.DynamicSharedLimit}.");
            Assert.True(launch.Shape.Block.Count <= LaunchShape.MaxThreadsPerBlock && launch.Shape.Block.Count % 32 == 0,
                        $"{launch.Name}: a block of {launch.Shape.Block.Count} threads.");
        }
    }

    private sealed unsafe class Recorded(KernelSpec spec, string name, RecordingKernelRuntime runtime) : KernelFunction(spec, name, runtime)
    {
        private int _limit = 48 << 10;

        public override void AllowDynamicSharedMemory(int bytes)
        {
            base.AllowDynamicSharedMemory(bytes);
            Assert.InRange(bytes, 0, runtime.MaxSharedMemoryPerBlockOptInBytes);
            _limit = bytes;
        }

        protected override void LaunchCore(in LaunchShape shape, ReadOnlySpan<KernelArgument> arguments, void** values)
        {
            runtime.Count++;
            if (!runtime.Record) return;
            var pointers = new List<ulong>();
            for (var i = 0; i < arguments.Length; i++)
                if (arguments[i].Kind == KernelParameterKind.Pointer) pointers.Add(*(ulong*)values[i]);
            runtime.Launches.Add(new RecordedLaunch(Name, shape, _limit, pointers));
        }
    }
}

/// <summary>One launch a <see cref="RecordingKernelRuntime"/> took.</summary>
internal sealed record RecordedLaunch(string Name, LaunchShape Shape, int DynamicSharedLimit, IReadOnlyList<ulong> Pointers)
{
    /// <summary>The entry point and its pointer arguments, such as <c>keel_rope_rotate(0x7f.., 0x7f.., 0x7f..)</c>.</summary>
    public override string ToString() => $"{Name}({string.Join(", ", Pointers.Select(p => $"0x{p:x}"))})";
}
