using Keel.Native.Devices.Cpu;
using Keel.Native.Kernels;
using Keel.Native.Numerics;

namespace Keel.Native.Devices.Emulated;

/// <summary>
/// The GPU's kernels, run on the CPU: every op that is a kernel executes the very same <c>kernels/*.cu</c>
/// source the GPU runs, compiled by the host C++ compiler and scheduled by the emulator (one fiber per CUDA
/// thread), so kernels are tested on machines without a GPU. Device memory is host memory (guarded against
/// out-of-bounds accesses by default); the GEMM, which is cuBLAS on the GPU, is the reference GEMM here.
/// Launch errors (barrier divergence, bad warp masks, out-of-bounds accesses, traps) raise
/// <see cref="KernelLaunchException"/> naming the kernel, block and threads.
/// </summary>
public sealed class EmulatedDevice : KernelDevice
{
    private readonly EmulatorLibrary _library;
    private readonly EmulatorOptions _options;
    private readonly CpuDevice _host = new();

    private EmulatedDevice(EmulatedKernelRuntime runtime, EmulatorOptions options) : base(runtime)
    {
        _library = runtime.Library;
        _options = options;
    }

    /// <summary>
    /// Builds (or finds in <paramref name="kernelCache"/>) the emulation runtime and opens the device.
    /// Needs a C++17 compiler (<c>g++</c>, or <c>KEEL_CXX</c>).
    /// </summary>
    /// <exception cref="InvalidOperationException">No compiler, or the runtime does not build.</exception>
    public static EmulatedDevice Open(EmulatorOptions? options = null, KernelCache? kernelCache = null)
    {
        options ??= new EmulatorOptions();
        var toolchain = new EmulatorToolchain(kernelCache);
        var library = new EmulatorLibrary(toolchain.RuntimeLibrary);
        return new EmulatedDevice(new EmulatedKernelRuntime(toolchain, library, options, kernelCache), options);
    }

    /// <inheritdoc />
    public override DeviceKind Kind => DeviceKind.Emulated;

    /// <inheritdoc />
    public override string Name =>
        $"emulated {_options.Architecture} ({Runtime.MultiprocessorCount} workers, bounds checking {(_options.BoundsChecking ? "on" : "off")}, " +
        $"checks {EmulatorChecksText.Format(_options.Checks)})";

    /// <summary>The checking modes this device runs kernels under.</summary>
    public EmulatorChecks Checks => _options.Checks;

    /// <summary>
    /// Allocates emulator memory: zero-filled, or under <see cref="EmulatorChecks.Init"/> filled with 0xff bytes (NaN) like the
    /// undefined contents of fresh GPU memory, with every byte tracked as unwritten until the host or a kernel writes it.
    /// </summary>
    public override DeviceBuffer Allocate(DType dtype, TensorShape shape)
    {
        var bytes = shape.ElementCount * dtype.SizeOf();
        var flags = _options.BoundsChecking ? EmulatorLibrary.AllocationFlags.Guarded : EmulatorLibrary.AllocationFlags.None;
        if (_options.Checks.HasFlag(EmulatorChecks.Init)) flags |= EmulatorLibrary.AllocationFlags.Poison | EmulatorLibrary.AllocationFlags.TrackInit;
        var pointer = _library.Allocate(Math.Max(1, bytes), flags);
        return new DeviceBuffer(this, new EmulatedAllocation(_library, pointer, bytes), dtype, shape);
    }

    // The host-side ops below write emulator memory directly; the init check must know those bytes are written.

    /// <inheritdoc />
    public override void CopyFromHost<T>(ReadOnlySpan<T> source, Tensor destination)
    {
        _host.CopyFromHost(source, destination);
        Written(destination);
    }

    /// <inheritdoc />
    protected override void CopyToHostCore<T>(Tensor source, Span<T> destination) => _host.CopyToHost(source, destination);

    /// <inheritdoc />
    public override void Copy(Tensor source, Tensor destination)
    {
        _host.Copy(source, destination);
        Written(destination);
    }

    /// <inheritdoc />
    public override void Clear(Tensor destination)
    {
        _host.Clear(destination);
        Written(destination);
    }

    /// <inheritdoc />
    protected override void SynchronizeCore()
    {
    }

    /// <inheritdoc />
    public override void Gemm(Tensor a, bool transposeA, Tensor b, bool transposeB, Tensor c, float alpha = 1f, float beta = 0f)
    {
        _host.Gemm(a, transposeA, b, transposeB, c, alpha, beta);
        Written(c);
    }

    private void Written(Tensor tensor)
    {
        if (_options.Checks.HasFlag(EmulatorChecks.Init)) _library.MarkWritten(tensor.Address, tensor.ByteLength);
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing) => _host.Dispose();
}
