namespace Keel.Cuda.Driver;

/// <summary>A stream: an ordered queue of device work (<c>cuStreamCreate</c>), destroyed on <see cref="IDisposable.Dispose"/>.</summary>
public sealed class CudaStream : CudaHandle
{
    private const uint NonBlockingFlag = 0x1; // CU_STREAM_NON_BLOCKING
    private readonly CudaContext _context;

    private CudaStream(CudaContext context, IntPtr stream, bool nonBlocking)
    {
        _context = context;
        IsNonBlocking = nonBlocking;
        SetHandle(stream);
    }

    /// <summary>
    /// True when the stream does not synchronize with the legacy default stream, which the synchronous copies of
    /// <see cref="DeviceMemory"/> use.
    /// </summary>
    public bool IsNonBlocking { get; }

    /// <summary>The context the stream belongs to.</summary>
    public CudaContext Context => _context;

    /// <summary>The raw <c>CUstream</c>, for library calls that take one.</summary>
    /// <exception cref="ObjectDisposedException">The stream was destroyed.</exception>
    internal IntPtr Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsClosed, this);
            return handle;
        }
    }

    /// <inheritdoc />
    protected override string Description => "CUDA stream";

    /// <summary>
    /// Creates a stream in <paramref name="context"/>. A blocking stream (the default) waits for, and is waited for by,
    /// the legacy default stream; a non-blocking one does neither, so ordering with synchronous copies is the caller's.
    /// </summary>
    public static CudaStream Create(CudaContext context, bool nonBlocking = false)
    {
        ArgumentNullException.ThrowIfNull(context);
        context.AddDependent();
        try
        {
            context.Bind();
            CudaDriverNative.Check(CudaDriverNative.cuStreamCreate(out var stream, nonBlocking ? NonBlockingFlag : 0), "cuStreamCreate");
            return new CudaStream(context, stream, nonBlocking);
        }
        catch
        {
            context.RemoveDependent();
            throw;
        }
    }

    /// <summary>Blocks until all work queued on this stream has finished.</summary>
    public void Synchronize() => CudaDriverNative.Check(CudaDriverNative.cuStreamSynchronize(Handle), "cuStreamSynchronize");

    /// <inheritdoc />
    protected override bool ReleaseHandle()
    {
        var destroyed = CudaDriverNative.cuCtxSetCurrent(_context.Handle) == CudaDriverNative.CUDA_SUCCESS
                        && CudaDriverNative.cuStreamDestroy(handle) == CudaDriverNative.CUDA_SUCCESS;
        _context.RemoveDependent();
        return destroyed;
    }
}
