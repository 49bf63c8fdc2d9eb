namespace Keel.Native.Devices;

/// <summary>
/// A view of <see cref="Length"/> elements of <typeparamref name="T"/> in a device's memory, starting at
/// <see cref="Address"/>: a CUDA device pointer on the GPU, a host pointer on the CPU and emulated devices.
/// It owns nothing; the <see cref="DeviceBuffer{T}"/> it came from does.
/// </summary>
public readonly unsafe struct DeviceSpan<T> where T : unmanaged
{
    /// <summary>Views <paramref name="length"/> elements at <paramref name="address"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is negative.</exception>
    public DeviceSpan(ulong address, long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        Address = address;
        Length = length;
    }

    /// <summary>The address of the first element.</summary>
    public ulong Address { get; }

    /// <summary>The number of elements.</summary>
    public long Length { get; }

    /// <summary>The number of bytes.</summary>
    public long ByteLength => Length * sizeof(T);

    /// <summary>True when the view has no elements.</summary>
    public bool IsEmpty => Length == 0;

    /// <summary>The elements from <paramref name="start"/> to the end.</summary>
    public DeviceSpan<T> Slice(long start) => Slice(start, Length - start);

    /// <summary>The <paramref name="length"/> elements from <paramref name="start"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range does not lie within this view.</exception>
    public DeviceSpan<T> Slice(long start, long length)
    {
        if (start < 0 || length < 0 || start > Length - length)
            throw new ArgumentOutOfRangeException(nameof(start), $"Range [{start}, {start}+{length}) lies outside a view of {Length} elements.");
        return new DeviceSpan<T>(Address + (ulong)(start * sizeof(T)), length);
    }

    /// <summary>True when <see cref="Address"/> is a multiple of <paramref name="bytes"/>.</summary>
    public bool IsAligned(int bytes) => Address % (ulong)bytes == 0;

    /// <inheritdoc />
    public override string ToString() => $"DeviceSpan<{typeof(T).Name}>[{Length}] @ 0x{Address:x}";
}
