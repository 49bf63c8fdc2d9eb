namespace Keel.Cuda.Driver;

/// <summary>
/// Page-locked host memory (<c>cuMemAllocHost</c>), freed on <see cref="IDisposable.Dispose"/>. Copies between it and
/// device memory on a stream run asynchronously and at full bus speed.
/// </summary>
public sealed unsafe class PinnedHostMemory : ContextBoundHandle
{
    private PinnedHostMemory(CudaContext context, long byteLength) : base(context) => ByteLength = byteLength;

    /// <summary>The host address of the first byte.</summary>
    /// <exception cref="ObjectDisposedException">The memory was freed.</exception>
    public IntPtr Pointer
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsClosed, this);
            return handle;
        }
    }

    /// <summary>The size of the allocation in bytes.</summary>
    public long ByteLength { get; }

    /// <inheritdoc />
    protected override string Description => $"pinned host memory of {ByteLength} bytes";

    /// <summary>Allocates <paramref name="byteLength"/> bytes of page-locked host memory for use with <paramref name="context"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="byteLength"/> is not positive.</exception>
    public static PinnedHostMemory Allocate(CudaContext context, long byteLength)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(byteLength);
        context.MakeCurrent();
        var memory = new PinnedHostMemory(context, byteLength);
        memory.Create((nuint)byteLength, static (bytes, out pointer) =>
            CudaDriverNative.Check(CudaDriverNative.cuMemAllocHost(out pointer, bytes), "cuMemAllocHost"));
        return memory;
    }

    /// <summary>Allocates room for <paramref name="count"/> elements of <typeparamref name="T"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> is not positive.</exception>
    public static PinnedHostMemory Allocate<T>(CudaContext context, long count) where T : unmanaged
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        return Allocate(context, checked(count * sizeof(T)));
    }

    /// <summary>The whole allocation as elements of <typeparamref name="T"/> (a trailing partial element is left out).</summary>
    /// <exception cref="InvalidOperationException">The allocation holds more than <see cref="int.MaxValue"/> elements.</exception>
    public Span<T> AsSpan<T>() where T : unmanaged
    {
        var count = ByteLength / sizeof(T);
        if (count > int.MaxValue)
            throw new InvalidOperationException($"{count} elements of {typeof(T).Name} do not fit in one span.");
        return new Span<T>((void*)Pointer, (int)count);
    }

    private protected override bool Destroy(IntPtr handle) => Released(CudaDriverNative.cuMemFreeHost(handle), "cuMemFreeHost");
}
