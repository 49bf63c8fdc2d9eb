namespace Keel.Native.Devices;

/// <summary>
/// <see cref="Length"/> elements of <typeparamref name="T"/> owned in one device's memory. Disposing it frees
/// the memory; the <see cref="DeviceSpan{T}"/> views taken from it must not be used afterwards.
/// </summary>
public sealed unsafe class DeviceBuffer<T> : IDisposable where T : unmanaged
{
    private readonly DeviceAllocation _allocation;

    /// <summary>Types <paramref name="allocation"/> as <paramref name="length"/> elements.</summary>
    /// <exception cref="ArgumentException">The allocation is too small.</exception>
    public DeviceBuffer(IDevice device, DeviceAllocation allocation, long length)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(allocation);
        if (length < 0 || length * sizeof(T) > allocation.ByteLength)
            throw new ArgumentException($"{length} elements of {typeof(T).Name} do not fit {allocation.ByteLength} bytes.", nameof(length));
        Device = device;
        _allocation = allocation;
        Length = length;
    }

    /// <summary>The device the memory lives on.</summary>
    public IDevice Device { get; }

    /// <summary>The number of elements.</summary>
    public long Length { get; }

    /// <summary>A view of the whole buffer.</summary>
    /// <exception cref="ObjectDisposedException">The buffer was disposed.</exception>
    public DeviceSpan<T> Span
    {
        get
        {
            ObjectDisposedException.ThrowIf(_allocation.IsDisposed, this);
            return new DeviceSpan<T>(_allocation.Address, Length);
        }
    }

    /// <summary>The view of the whole buffer.</summary>
    public static implicit operator DeviceSpan<T>(DeviceBuffer<T> buffer) => buffer.Span;

    /// <inheritdoc />
    public void Dispose() => _allocation.Dispose();
}
