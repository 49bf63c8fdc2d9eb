namespace Keel.Native.Devices;

/// <summary>
/// A block of one device's memory, released on <see cref="IDisposable.Dispose"/>. Each device kind has its
/// own (CUDA device memory, aligned host memory, guarded emulator memory); a <see cref="DeviceBuffer"/>
/// gives it a tensor type and shape.
/// </summary>
public abstract class DeviceAllocation : IDisposable
{
    /// <summary>Describes <paramref name="byteLength"/> bytes at <paramref name="address"/>.</summary>
    protected DeviceAllocation(ulong address, long byteLength)
    {
        Address = address;
        ByteLength = byteLength;
    }

    /// <summary>The first byte.</summary>
    public ulong Address { get; }

    /// <summary>The size in bytes.</summary>
    public long ByteLength { get; }

    /// <summary>True once released.</summary>
    public bool IsDisposed { get; private set; }

    /// <inheritdoc />
    public void Dispose()
    {
        if (IsDisposed) return;
        IsDisposed = true;
        Release();
        GC.SuppressFinalize(this);
    }

    /// <summary>Returns the memory to the device.</summary>
    protected abstract void Release();
}
