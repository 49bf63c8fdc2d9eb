using Keel.Native.Numerics;

namespace Keel.Native.Devices;

/// <summary>
/// A view of a row-major tensor in one device's memory: where it starts, its element type and its shape.
/// <see cref="Address"/> is a CUDA device pointer on the GPU and a host pointer on the CPU and emulated
/// devices. A view owns nothing (the <see cref="DeviceBuffer"/> it came from does) and costs nothing to make.
/// </summary>
public readonly struct Tensor
{
    /// <summary>Views memory at <paramref name="address"/> as <paramref name="dtype"/> elements of <paramref name="shape"/>.</summary>
    public Tensor(ulong address, DType dtype, TensorShape shape)
    {
        Address = address;
        DType = dtype;
        Shape = shape;
    }

    /// <summary>The first element.</summary>
    public ulong Address { get; }

    /// <summary>The element type.</summary>
    public DType DType { get; }

    /// <summary>The extents.</summary>
    public TensorShape Shape { get; }

    /// <summary>The number of elements.</summary>
    public long Length => Shape.ElementCount;

    /// <summary>The number of bytes.</summary>
    public long ByteLength => Length * DType.SizeOf();

    /// <summary>True for a view with no elements (such as an omitted optional input).</summary>
    public bool IsEmpty => Length == 0;

    /// <summary>The same memory with another shape of the same element count.</summary>
    /// <exception cref="ArgumentException">The element counts differ.</exception>
    public Tensor Reshape(TensorShape shape) => shape.ElementCount == Length
        ? new Tensor(Address, DType, shape)
        : throw new ArgumentException($"Cannot view {Shape} ({Length} elements) as {shape} ({shape.ElementCount} elements).", nameof(shape));

    /// <summary>The flat elements [<paramref name="start"/>, <paramref name="start"/> + <paramref name="length"/>) as a vector.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range lies outside this view.</exception>
    public Tensor Slice(long start, long length)
    {
        if (start < 0 || length < 0 || start > Length - length)
            throw new ArgumentOutOfRangeException(nameof(start), $"Range [{start}, {start}+{length}) lies outside {Length} elements.");
        return new Tensor(Address + (ulong)(start * DType.SizeOf()), DType, new TensorShape(length));
    }

    /// <summary>True when <see cref="Address"/> is a multiple of <paramref name="bytes"/>.</summary>
    public bool IsAligned(int bytes) => Address % (ulong)bytes == 0;

    /// <inheritdoc />
    public override string ToString() => $"{DType}{Shape} @ 0x{Address:x}";
}
