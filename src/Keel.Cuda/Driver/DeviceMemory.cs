namespace Keel.Cuda.Driver;

/// <summary>
/// One allocation of device memory (<c>cuMemAlloc</c>), freed on <see cref="IDisposable.Dispose"/>. Copies and fills
/// take byte offsets into the allocation and check every range before calling the driver.
/// </summary>
/// <remarks>
/// The methods without <c>Async</c> run on the legacy default stream with the driver's synchronous semantics: a copy
/// to the host returns when the data is there; a copy from the host returns once the source may be reused; device
/// copies and fills may still be running. All of them are ordered before later work on the default stream and on
/// blocking <see cref="CudaStream"/>s; work on a non-blocking stream needs <see cref="CudaContext.Synchronize"/> first.
/// The <c>...Async</c> methods queue work on a stream and return. From page-locked host memory
/// (<see cref="PinnedHostMemory.AsSpan{T}"/>) the copy truly overlaps, and the host memory must stay untouched until
/// the stream reaches it. From ordinary (pageable) memory the driver stages the data before the call returns, so a
/// managed array may be reused at once, but the copy no longer overlaps with the host.
/// </remarks>
public sealed unsafe class DeviceMemory : ContextBoundHandle
{
    private DeviceMemory(CudaContext context, long byteLength) : base(context) => ByteLength = byteLength;

    /// <summary>The device address (<c>CUdeviceptr</c>) of the first byte, for kernel arguments and library calls.</summary>
    /// <exception cref="ObjectDisposedException">The memory was freed.</exception>
    public ulong Address
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsClosed, this);
            return (ulong)handle;
        }
    }

    /// <summary>The size of the allocation in bytes.</summary>
    public long ByteLength { get; }

    /// <inheritdoc />
    protected override string Description => $"device memory of {ByteLength} bytes";

    /// <summary>Allocates <paramref name="byteLength"/> bytes of device memory in <paramref name="context"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="byteLength"/> is not positive.</exception>
    /// <exception cref="CudaException">The driver refused, for example with CUDA_ERROR_OUT_OF_MEMORY.</exception>
    public static DeviceMemory Allocate(CudaContext context, long byteLength)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(byteLength);
        context.MakeCurrent();
        var memory = new DeviceMemory(context, byteLength);
        memory.Create((nuint)byteLength, static (bytes, out address) =>
            CudaDriverNative.Check(CudaDriverNative.cuMemAlloc(out address, bytes), "cuMemAlloc"));
        return memory;
    }

    /// <summary>Allocates room for <paramref name="count"/> elements of <typeparamref name="T"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> is not positive.</exception>
    public static DeviceMemory Allocate<T>(CudaContext context, long count) where T : unmanaged
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        return Allocate(context, checked(count * sizeof(T)));
    }

    /// <summary>Copies <paramref name="source"/> from the host to this memory at <paramref name="destinationOffset"/> bytes (see the remarks on ordering).</summary>
    /// <exception cref="ArgumentException">The data does not fit at that offset.</exception>
    public void CopyFrom<T>(ReadOnlySpan<T> source, long destinationOffset = 0) where T : unmanaged
    {
        var byteCount = (long)source.Length * sizeof(T);
        using var range = Lease(destinationOffset, byteCount, nameof(destinationOffset), nameof(source));
        if (byteCount == 0) return;
        fixed (T* p = source)
            CudaDriverNative.Check(CudaDriverNative.cuMemcpyHtoD(range.Address, p, (nuint)byteCount), "cuMemcpyHtoD");
    }

    /// <summary>Copies from this memory at <paramref name="sourceOffset"/> bytes into <paramref name="destination"/> on the host; returns when done.</summary>
    /// <exception cref="ArgumentException">The destination reaches past the end of this memory from that offset.</exception>
    public void CopyTo<T>(Span<T> destination, long sourceOffset = 0) where T : unmanaged
    {
        var byteCount = (long)destination.Length * sizeof(T);
        using var range = Lease(sourceOffset, byteCount, nameof(sourceOffset), nameof(destination));
        if (byteCount == 0) return;
        fixed (T* p = destination)
            CudaDriverNative.Check(CudaDriverNative.cuMemcpyDtoH(p, range.Address, (nuint)byteCount), "cuMemcpyDtoH");
    }

    /// <summary>Queues a host-to-device copy of <paramref name="source"/> on <paramref name="stream"/> (see the remarks on overlap).</summary>
    /// <exception cref="ArgumentException">The data does not fit at that offset.</exception>
    public void CopyFromAsync<T>(ReadOnlySpan<T> source, CudaStream stream, long destinationOffset = 0) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(stream);
        var byteCount = (long)source.Length * sizeof(T);
        using var range = Lease(destinationOffset, byteCount, nameof(destinationOffset), nameof(source));
        if (byteCount == 0) return;
        fixed (T* p = source)
            CudaDriverNative.Check(CudaDriverNative.cuMemcpyHtoDAsync(range.Address, p, (nuint)byteCount, stream), "cuMemcpyHtoDAsync");
    }

    /// <summary>Queues a device-to-host copy into <paramref name="destination"/> on <paramref name="stream"/> (see the remarks on overlap).</summary>
    /// <exception cref="ArgumentException">The destination reaches past the end of this memory from that offset.</exception>
    public void CopyToAsync<T>(Span<T> destination, CudaStream stream, long sourceOffset = 0) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(stream);
        var byteCount = (long)destination.Length * sizeof(T);
        using var range = Lease(sourceOffset, byteCount, nameof(sourceOffset), nameof(destination));
        if (byteCount == 0) return;
        fixed (T* p = destination)
            CudaDriverNative.Check(CudaDriverNative.cuMemcpyDtoHAsync(p, range.Address, (nuint)byteCount, stream), "cuMemcpyDtoHAsync");
    }

    /// <summary>Copies <paramref name="byteCount"/> bytes from <paramref name="source"/> into this memory, device to device (see the remarks on ordering).</summary>
    /// <exception cref="ArgumentException">Either range falls outside its allocation.</exception>
    public void CopyFrom(DeviceMemory source, long sourceOffset, long destinationOffset, long byteCount)
    {
        ArgumentNullException.ThrowIfNull(source);
        using var from = source.Lease(sourceOffset, byteCount, nameof(sourceOffset), nameof(byteCount));
        using var to = Lease(destinationOffset, byteCount, nameof(destinationOffset), nameof(byteCount));
        if (byteCount == 0) return;
        CudaDriverNative.Check(CudaDriverNative.cuMemcpyDtoD(to.Address, from.Address, (nuint)byteCount), "cuMemcpyDtoD");
    }

    /// <summary>Queues a device-to-device copy of <paramref name="byteCount"/> bytes on <paramref name="stream"/>.</summary>
    /// <exception cref="ArgumentException">Either range falls outside its allocation.</exception>
    public void CopyFromAsync(DeviceMemory source, long sourceOffset, long destinationOffset, long byteCount, CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(stream);
        using var from = source.Lease(sourceOffset, byteCount, nameof(sourceOffset), nameof(byteCount));
        using var to = Lease(destinationOffset, byteCount, nameof(destinationOffset), nameof(byteCount));
        if (byteCount == 0) return;
        CudaDriverNative.Check(CudaDriverNative.cuMemcpyDtoDAsync(to.Address, from.Address, (nuint)byteCount, stream), "cuMemcpyDtoDAsync");
    }

    /// <summary>Sets every byte of the allocation to <paramref name="value"/> (see the remarks on ordering).</summary>
    public void FillBytes(byte value) => FillBytes(value, 0, ByteLength);

    /// <summary>Sets <paramref name="byteCount"/> bytes from <paramref name="byteOffset"/> to <paramref name="value"/> (see the remarks on ordering).</summary>
    /// <exception cref="ArgumentException">The range falls outside the allocation.</exception>
    public void FillBytes(byte value, long byteOffset, long byteCount)
    {
        using var range = Lease(byteOffset, byteCount, nameof(byteOffset), nameof(byteCount));
        if (byteCount == 0) return;
        CudaDriverNative.Check(CudaDriverNative.cuMemsetD8(range.Address, value, (nuint)byteCount), "cuMemsetD8");
    }

    /// <summary>Queues setting every byte of the allocation to <paramref name="value"/> on <paramref name="stream"/>.</summary>
    public void FillBytesAsync(byte value, CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        using var range = Lease(0, ByteLength, "byteOffset", "byteCount");
        CudaDriverNative.Check(CudaDriverNative.cuMemsetD8Async(range.Address, value, (nuint)ByteLength, stream), "cuMemsetD8Async");
    }

    /// <summary>
    /// Sets every 32-bit word of the allocation to <paramref name="value"/> (use <see cref="BitConverter.SingleToUInt32Bits"/>
    /// to fill with a float, for example a NaN poison); see the remarks on ordering.
    /// </summary>
    /// <exception cref="InvalidOperationException">The allocation is not a whole number of 32-bit words.</exception>
    public void FillUInt32(uint value) => FillUInt32(value, 0, WholeWords);

    /// <summary>Sets <paramref name="count"/> 32-bit words from <paramref name="byteOffset"/> to <paramref name="value"/> (see the remarks on ordering).</summary>
    /// <exception cref="ArgumentException">The offset is not 4-byte aligned or the range falls outside the allocation.</exception>
    public void FillUInt32(uint value, long byteOffset, long count)
    {
        if (byteOffset % sizeof(uint) != 0)
            throw new ArgumentException($"the offset {byteOffset} is not a multiple of 4 bytes.", nameof(byteOffset));
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        using var range = Lease(byteOffset, count * sizeof(uint), nameof(byteOffset), nameof(count));
        if (count == 0) return;
        CudaDriverNative.Check(CudaDriverNative.cuMemsetD32(range.Address, value, (nuint)count), "cuMemsetD32");
    }

    /// <summary>Queues setting every 32-bit word of the allocation to <paramref name="value"/> on <paramref name="stream"/>.</summary>
    /// <exception cref="InvalidOperationException">The allocation is not a whole number of 32-bit words.</exception>
    public void FillUInt32Async(uint value, CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var count = WholeWords;
        using var range = Lease(0, ByteLength, "byteOffset", "byteCount");
        CudaDriverNative.Check(CudaDriverNative.cuMemsetD32Async(range.Address, value, (nuint)count, stream), "cuMemsetD32Async");
    }

    /// <summary>
    /// Checks that <paramref name="byteCount"/> bytes from <paramref name="byteOffset"/> lie inside an allocation of
    /// <paramref name="byteLength"/> bytes, naming the offending argument. Static so that it can be checked without a device.
    /// </summary>
    internal static void ValidateRange(long byteLength, long byteOffset, long byteCount, string offsetName, string countName)
    {
        if (byteOffset < 0 || byteOffset > byteLength)
            throw new ArgumentOutOfRangeException(offsetName, byteOffset, $"the offset must lie within the {byteLength} bytes of the allocation.");
        if (byteCount < 0)
            throw new ArgumentOutOfRangeException(countName, byteCount, "the byte count must not be negative.");
        if (byteCount > byteLength - byteOffset)
            throw new ArgumentException(
                $"{byteCount} bytes at offset {byteOffset} reach past the end of the {byteLength}-byte allocation.", countName);
    }

    /// <summary>The allocation's length in 32-bit words.</summary>
    /// <exception cref="InvalidOperationException">The allocation is not a whole number of 32-bit words.</exception>
    private long WholeWords => ByteLength % sizeof(uint) == 0
        ? ByteLength / sizeof(uint)
        : throw new InvalidOperationException($"{ByteLength} bytes are not a whole number of 32-bit words.");

    /// <summary>
    /// Checks a range of this allocation, makes its context current and holds the allocation until the returned lease is
    /// disposed, so a <see cref="IDisposable.Dispose"/> on another thread cannot free it during the call.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The memory was freed.</exception>
    private DeviceRange Lease(long byteOffset, long byteCount, string offsetName, string countName)
    {
        ValidateRange(ByteLength, byteOffset, byteCount, offsetName, countName);
        Context.MakeCurrent();
        return new DeviceRange(new HandleLease(this), byteOffset);
    }

    /// <summary>A held allocation and the device address of a checked offset into it.</summary>
    private readonly ref struct DeviceRange(HandleLease lease, long byteOffset)
    {
        private readonly HandleLease _lease = lease;

        /// <summary>The device address of the range's first byte.</summary>
        public ulong Address => (ulong)_lease.Value + (ulong)byteOffset;

        public void Dispose() => _lease.Dispose();
    }

    private protected override bool Destroy(IntPtr handle) => Released(CudaDriverNative.cuMemFree(handle), "cuMemFree");
}
