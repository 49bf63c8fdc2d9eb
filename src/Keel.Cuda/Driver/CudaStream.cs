namespace Keel.Cuda.Driver;

/// <summary>A stream: an ordered queue of device work (<c>cuStreamCreate</c>), destroyed on <see cref="IDisposable.Dispose"/>.</summary>
public sealed unsafe class CudaStream : ContextBoundHandle
{
    private const uint NonBlockingFlag = 0x1; // CU_STREAM_NON_BLOCKING

    private CudaStream(CudaContext context, bool nonBlocking) : base(context) => IsNonBlocking = nonBlocking;

    /// <summary>
    /// True when the stream does not synchronize with the legacy default stream, which the synchronous copies of
    /// <see cref="DeviceMemory"/> use.
    /// </summary>
    public bool IsNonBlocking { get; }

    /// <inheritdoc />
    protected override string Description => "CUDA stream";

    /// <summary>
    /// Creates a stream in <paramref name="context"/>. A blocking stream (the default) waits for, and is waited for by,
    /// the legacy default stream; a non-blocking one does neither, so ordering with synchronous copies is the caller's.
    /// </summary>
    public static CudaStream Create(CudaContext context, bool nonBlocking = false)
    {
        ArgumentNullException.ThrowIfNull(context);
        context.MakeCurrent();
        var stream = new CudaStream(context, nonBlocking);
        stream.Create(nonBlocking ? NonBlockingFlag : 0u,
                      static (flags, out handle) => CudaDriverNative.Check(CudaDriverNative.cuStreamCreate(out handle, flags), "cuStreamCreate"));
        return stream;
    }

    /// <summary>Blocks until all work queued on this stream has finished.</summary>
    public void Synchronize() => CudaDriverNative.Check(CudaDriverNative.cuStreamSynchronize(this), "cuStreamSynchronize");

    /// <summary>True when all work queued on this stream has finished (<c>cuStreamQuery</c>); never blocks. A failed kernel surfaces here.</summary>
    public bool IsComplete()
    {
        var result = CudaDriverNative.cuStreamQuery(this);
        if (result == CudaDriverNative.CUDA_ERROR_NOT_READY) return false;
        CudaDriverNative.Check(result, "cuStreamQuery");
        return true;
    }

    /// <summary>Makes the work queued on this stream from now on wait until <paramref name="evt"/>'s last recorded point has run (<c>cuStreamWaitEvent</c>); the host does not wait.</summary>
    public void Wait(CudaEvent evt)
    {
        ArgumentNullException.ThrowIfNull(evt);
        CudaDriverNative.Check(CudaDriverNative.cuStreamWaitEvent(this, evt, 0), "cuStreamWaitEvent");
    }

    /// <summary>
    /// Queues a host-to-device copy of <paramref name="source"/> to the raw device address
    /// <paramref name="destination"/>. From pageable host memory the call returns once the data is staged, so
    /// <paramref name="source"/> may be reused right away. The caller guarantees the destination range lies in
    /// live device memory of this stream's context (views such as Keel.Native's tensors check that).
    /// </summary>
    public void CopyToDevice<T>(ReadOnlySpan<T> source, ulong destination) where T : unmanaged
    {
        if (source.IsEmpty) return;
        fixed (T* p = source)
            CudaDriverNative.Check(CudaDriverNative.cuMemcpyHtoDAsync(destination, p, (nuint)((long)source.Length * sizeof(T)), this),
                                   "cuMemcpyHtoDAsync");
    }

    /// <summary>
    /// Copies from the raw device address <paramref name="source"/> into <paramref name="destination"/>, after the
    /// work queued before it on this stream; returns when the data has arrived (pageable host memory).
    /// </summary>
    public void CopyToHost<T>(ulong source, Span<T> destination) where T : unmanaged
    {
        if (destination.IsEmpty) return;
        fixed (T* p = destination)
            CudaDriverNative.Check(CudaDriverNative.cuMemcpyDtoHAsync(p, source, (nuint)((long)destination.Length * sizeof(T)), this),
                                   "cuMemcpyDtoHAsync");
        Synchronize();
    }

    /// <summary>Queues a device-to-device copy of <paramref name="byteCount"/> bytes between raw addresses.</summary>
    public void CopyDeviceToDevice(ulong source, ulong destination, long byteCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(byteCount);
        if (byteCount == 0) return;
        CudaDriverNative.Check(CudaDriverNative.cuMemcpyDtoDAsync(destination, source, (nuint)byteCount, this), "cuMemcpyDtoDAsync");
    }

    /// <summary>Queues setting <paramref name="byteCount"/> bytes at the raw address <paramref name="destination"/> to <paramref name="value"/>.</summary>
    public void FillBytes(ulong destination, byte value, long byteCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(byteCount);
        if (byteCount == 0) return;
        CudaDriverNative.Check(CudaDriverNative.cuMemsetD8Async(destination, value, (nuint)byteCount, this), "cuMemsetD8Async");
    }

    private protected override bool Destroy(IntPtr handle) => Released(CudaDriverNative.cuStreamDestroy(handle), "cuStreamDestroy");
}
