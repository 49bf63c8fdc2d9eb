using Keel.Native.Numerics;

namespace Keel.Native.Devices;

/// <summary>
/// Memory owned on one device, with the tensor it holds. Disposing it frees the memory; views taken from
/// <see cref="Tensor"/> must not be used afterwards.
/// </summary>
public sealed class DeviceBuffer : IDisposable
{
    private readonly DeviceAllocation _allocation;
    private readonly Tensor _tensor;

    /// <summary>Gives <paramref name="allocation"/> the element type and shape of a tensor.</summary>
    /// <exception cref="ArgumentException">The tensor does not fit the allocation.</exception>
    public DeviceBuffer(IDevice device, DeviceAllocation allocation, DType dtype, TensorShape shape)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(allocation);
        var tensor = new Tensor(allocation.Address, dtype, shape);
        if (tensor.ByteLength > allocation.ByteLength)
            throw new ArgumentException($"{tensor} needs {tensor.ByteLength} bytes; the allocation has {allocation.ByteLength}.", nameof(shape));
        Device = device;
        _allocation = allocation;
        _tensor = tensor;
    }

    /// <summary>The device the memory lives on.</summary>
    public IDevice Device { get; }

    /// <summary>The whole tensor.</summary>
    /// <exception cref="ObjectDisposedException">The buffer was disposed.</exception>
    public Tensor Tensor
    {
        get
        {
            ObjectDisposedException.ThrowIf(_allocation.IsDisposed, this);
            return _tensor;
        }
    }

    /// <summary>The whole tensor.</summary>
    public static implicit operator Tensor(DeviceBuffer buffer) => buffer.Tensor;

    /// <inheritdoc />
    public void Dispose() => _allocation.Dispose();
}
