using Keel.Cuda.Cublas;
using Keel.Cuda.Driver;
using Keel.Native.Kernels;
using Keel.Native.Numerics;

namespace Keel.Native.Devices.Cuda;

/// <summary>
/// An NVIDIA GPU: the primary context of one device, one stream on which every op is queued in order, a
/// cuBLAS handle with its workspace for the GEMMs, and the kernels of <c>kernels/</c> compiled by NVRTC for
/// the device's exact architecture. Calls may come from any thread (the context is made current on the
/// calling thread when needed), but not from two at once.
/// </summary>
public sealed class CudaDevice : KernelDevice, IGraphCapture
{
    /// <summary>The cuBLAS workspace every GEMM may use: 32 MiB, what cuBLAS asks for on Hopper to reach its fastest kernels (smaller GPUs need 4 MiB).</summary>
    public const long CublasWorkspaceBytes = 32L << 20;

    [ThreadStatic] private static CudaContext? s_current;

    private readonly CudaContext _context;
    private readonly CudaStream _stream;
    private readonly DeviceMemory _workspace;
    private readonly CublasHandle _cublas;
    private readonly CudaKernelRuntime _runtime;

    private CudaDevice(CudaContext context, CudaStream stream, DeviceMemory workspace, CublasHandle cublas, CudaKernelRuntime runtime, CudaDeviceInfo info)
        : base(runtime)
    {
        _context = context;
        _stream = stream;
        _workspace = workspace;
        _cublas = cublas;
        _runtime = runtime;
        Info = info;
    }

    /// <summary>
    /// Opens GPU <paramref name="ordinal"/>. Throws <see cref="Keel.Cuda.Interop.CudaLibraryNotFoundException"/>
    /// when the driver or cuBLAS is missing, <see cref="ArgumentOutOfRangeException"/> for an ordinal with no GPU.
    /// </summary>
    public static CudaDevice Open(int ordinal = 0, KernelCache? kernelCache = null)
    {
        CudaDriver.Initialize();
        var count = CudaDriver.DeviceCount;
        if (ordinal < 0 || ordinal >= count)
            throw new ArgumentOutOfRangeException(nameof(ordinal), ordinal, count == 0 ? "The CUDA driver reports no GPU." : $"There are {count} GPUs (0 to {count - 1}).");
        var info = CudaDeviceInfo.Query(ordinal);
        var context = CudaContext.RetainPrimary(ordinal);
        var disposables = new Stack<IDisposable>([context]);
        try
        {
            context.MakeCurrent();
            var stream = CudaStream.Create(context);
            disposables.Push(stream);
            var workspace = DeviceMemory.Allocate(context, CublasWorkspaceBytes);
            disposables.Push(workspace);
            var cublas = CublasHandle.Create(stream, workspace);
            disposables.Push(cublas);
            // bf16-output GEMMs (the branch outputs f, q/k/v) accumulate and split-K-reduce in fp32 and round once, as
            // the reference does; by default cuBLAS may reduce split-K partials in the output type.
            cublas.SetMathMode(CublasMathMode.Default | CublasMathMode.DisallowReducedPrecisionReduction);
            var runtime = new CudaKernelRuntime(context, stream, info, new NvrtcKernelCompiler(kernelCache));
            BindContext(context);
            return new CudaDevice(context, stream, workspace, cublas, runtime, info);
        }
        catch
        {
            while (disposables.Count > 0) disposables.Pop().Dispose();
            throw;
        }
    }

    /// <summary>The GPU's name, architecture and sizes.</summary>
    public CudaDeviceInfo Info { get; }

    /// <summary>The stream every op is queued on (for events and graph capture).</summary>
    public CudaStream Stream => _stream;

    /// <summary>Creates an event on this device's context, for timing work on <see cref="Stream"/>; the caller owns it.</summary>
    public CudaEvent CreateEvent(bool timing = true)
    {
        Bind();
        return CudaEvent.Create(_context, timing);
    }

    /// <inheritdoc />
    public override IGraphCapture? GraphCapture => this;

    /// <inheritdoc />
    public override CudaStream? NativeStream => _stream;

    /// <inheritdoc />
    /// <remarks>Events on <see cref="Stream"/>.</remarks>
    public override KernelProfiler CreateProfiler() => KernelProfiler.CudaEvents(_stream);

    /// <inheritdoc />
    public override DeviceMemoryInfo? QueryMemory()
    {
        var info = _context.MemoryInfo;  // makes the context current itself
        return new DeviceMemoryInfo(TotalBytes: info.TotalBytes, FreeBytes: info.FreeBytes);
    }

    /// <summary>
    /// Records the work <paramref name="work"/> queues on <see cref="Stream"/> into an executable CUDA graph; nothing runs
    /// while it records. The work must queue only device work: no allocation (the capture is thread-local, so one fails
    /// with a <see cref="Keel.Cuda.CudaException"/> naming the call), no copy to the host and no synchronization. Kernel
    /// arguments, including every tensor address, are frozen into the graph: replay it only while they stay valid, with
    /// whatever changes between replays uploaded into the same buffers first. The kernels' scratch
    /// (<see cref="KernelDevice.Workspace"/>) stays where it is until the graph is disposed: an op that would need more than
    /// was reserved throws <see cref="InvalidOperationException"/> rather than free memory the graph uses. The caller owns
    /// the result.
    /// </summary>
    public IDeviceGraph Capture(Action work) => new Graph(this, CaptureGraph(work));

    private CudaGraphExec CaptureGraph(Action work)
    {
        ArgumentNullException.ThrowIfNull(work);
        Bind();
        CudaGraph.BeginCapture(_stream, StreamCaptureMode.ThreadLocal);
        try
        {
            Workspace.RunFrozen(work);
        }
        catch
        {
            // End the capture so the stream is usable again; the partial graph is of no use.
            try
            {
                CudaGraph.EndCapture(_stream).Dispose();
            }
            catch (Keel.Cuda.CudaException)
            {
                // The capture was already invalidated by whatever failed; the first exception says what.
            }
            throw;
        }
        using var graph = CudaGraph.EndCapture(_stream);
        var executable = graph.Instantiate();
        Workspace.FreezeWhileOpen(executable);
        return executable;
    }

    /// <summary>A captured graph and the device whose stream replays it.</summary>
    private sealed class Graph(CudaDevice device, CudaGraphExec graph) : IDeviceGraph
    {
        public void Replay()
        {
            device.Bind();
            graph.Launch(device._stream);
            // The replayed kernels may record errors (token ids) like their eager launches; check at the next synchronization.
            device.ExpectDeferredChecks();
        }

        public void Dispose() => graph.Dispose();
    }

    /// <inheritdoc />
    public override DeviceKind Kind => DeviceKind.Cuda;

    /// <inheritdoc />
    public override string Name => $"cuda:{Info.Ordinal} {Info.Name} ({Info.Architecture})";

    /// <inheritdoc />
    public override DeviceBuffer Allocate(DType dtype, TensorShape shape)
    {
        Bind();
        // A zero-byte tensor still gets a real allocation, so every buffer has a distinct address.
        var memory = DeviceMemory.Allocate(_context, Math.Max(1, shape.ElementCount * dtype.SizeOf()));
        return new DeviceBuffer(this, new CudaAllocation(memory), dtype, shape);
    }

    /// <inheritdoc />
    public override void CopyFromHost<T>(ReadOnlySpan<T> source, Tensor destination)
    {
        HostMemory.CheckCopy<T>(source.Length, destination, nameof(destination));
        Bind();
        _stream.CopyToDevice(source, destination.Address);
    }

    /// <inheritdoc />
    protected override void CopyToHostCore<T>(Tensor source, Span<T> destination)
    {
        HostMemory.CheckCopy<T>(destination.Length, source, nameof(source));
        Bind();
        _stream.CopyToHost(source.Address, destination);
    }

    /// <inheritdoc />
    public override void Copy(Tensor source, Tensor destination)
    {
        Require.DType(destination, source.DType);
        Require.Length(destination, source.Length);
        Bind();
        _stream.CopyDeviceToDevice(source.Address, destination.Address, source.ByteLength);
    }

    /// <inheritdoc />
    public override void Clear(Tensor destination)
    {
        Bind();
        _stream.FillBytes(destination.Address, 0, destination.ByteLength);
    }

    /// <inheritdoc />
    protected override void SynchronizeCore()
    {
        Bind();
        _stream.Synchronize();
    }

    /// <inheritdoc />
    /// <remarks>
    /// cuBLAS is column-major, and a row-major matrix is the column-major storage of its transpose, so the
    /// row-major product c = op(a)·op(b) runs as the column-major product cᵀ = op(b)ᵀ·op(a)ᵀ: b first, with
    /// each operand's own leading dimension (its stored row length).
    /// </remarks>
    public override void Gemm(Tensor a, bool transposeA, Tensor b, bool transposeB, Tensor c, float alpha = 1f, float beta = 0f)
    {
        var (m, n, k) = GemmShape.Of(a, transposeA, b, transposeB, c);
        // cuBLAS reads A and B while it writes C in tiles: an output overlapping an operand gives garbage, not an error.
        Kernels.Launchers.Overlap.RequireDisjoint(c, a);
        Kernels.Launchers.Overlap.RequireDisjoint(c, b);
        var opA = transposeB ? CublasOperation.Transpose : CublasOperation.None;
        var opB = transposeA ? CublasOperation.Transpose : CublasOperation.None;
        int ldb = (int)b.Shape.Last, lda = (int)a.Shape.Last;
        Bind();
        switch (a.DType, b.DType, c.DType)
        {
            case (DType.BFloat16, DType.BFloat16, DType.Float32 or DType.BFloat16):
                _cublas.GemmBf16(opA, opB, n, m, k, alpha, b.Address, ldb, a.Address, lda, beta, c.Address, n,
                    c.DType == DType.Float32 ? CudaDataType.R32F : CudaDataType.R16BF);
                break;
            case (DType.Float32, DType.Float32, DType.Float32):
                _cublas.GemmFp32(opA, opB, n, m, k, alpha, b.Address, ldb, a.Address, lda, beta, c.Address, n);
                break;
            default:
                throw new ArgumentException($"No GPU GEMM for {a.DType} x {b.DType} -> {c.DType}; operands are both BFloat16 (output Float32 or BFloat16) or both Float32.", nameof(c));
        }
    }

    /// <inheritdoc />
    protected override void DrainBeforeRelease()
    {
        try
        {
            Bind();
            _stream.Synchronize();
        }
        catch (Keel.Cuda.CudaException)
        {
            // A failed kernel leaves the context unusable (a sticky error): the handles below are released all the same,
            // and the error was or will be reported by the call that synchronizes.
        }
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (!disposing) return;
        _runtime.Dispose();
        _cublas.Dispose();
        _workspace.Dispose();
        _stream.Dispose();
        if (ReferenceEquals(s_current, _context)) s_current = null;
        _context.Dispose();
    }

    private void Bind() => BindContext(_context);

    /// <summary>
    /// Makes <paramref name="context"/> current on the calling thread unless this class (or a kernel launch, through
    /// <see cref="CudaKernelRuntime"/>) already did, so that ops issued from a thread that has never used the device
    /// work, at the cost of one thread-static read when it has. Contexts changed behind the library's back (another
    /// library, a second GPU's handle released on this thread) are not noticed: one GPU per process is assumed.
    /// </summary>
    internal static void BindContext(CudaContext context)
    {
        if (ReferenceEquals(s_current, context)) return;
        context.MakeCurrent();
        s_current = context;
    }
}
