using Keel.Native.Numerics;

namespace Keel.Native.Devices;

/// <summary>
/// Span access to tensors that live in host memory (the CPU and emulated devices). The tensor's element
/// type must match the span's, and a span holds at most <see cref="int.MaxValue"/> elements.
/// </summary>
internal static unsafe class HostMemory
{
    public static Span<T> Span<T>(Tensor tensor, [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(tensor))] string? name = null)
        where T : unmanaged
    {
        if (tensor.DType != DTypes.Of<T>())
            throw new ArgumentException($"{name} is {tensor.DType}; {DTypes.Of<T>()} expected.", name);
        if (tensor.Length > int.MaxValue)
            throw new ArgumentException($"{name} has {tensor.Length} elements; host spans hold at most {int.MaxValue}.", name);
        return new Span<T>((void*)tensor.Address, (int)tensor.Length);
    }

    public static Span<byte> Bytes(Tensor tensor) => new((void*)tensor.Address, checked((int)tensor.ByteLength));

    public static void CheckCopy<T>(int sourceLength, Tensor tensor, string name) where T : unmanaged
    {
        if (tensor.DType != DTypes.Of<T>())
            throw new ArgumentException($"{name} is {tensor.DType} but the host data is {typeof(T).Name}.", name);
        if (tensor.Length != sourceLength)
            throw new ArgumentException($"{name} has {tensor.Length} elements but the host data has {sourceLength}.", name);
    }
}
