using System.Runtime.CompilerServices;
using Keel.Native.Numerics;

namespace Keel.Native.Devices;

/// <summary>Argument checks shared by the devices and launchers; each throws before any work starts.</summary>
internal static class Require
{
    public static void DType(Tensor tensor, DType expected, [CallerArgumentExpression(nameof(tensor))] string? name = null)
    {
        if (tensor.DType != expected)
            throw new ArgumentException($"{name} is {tensor.DType}; {expected} expected.", name);
    }

    public static void Shape(Tensor tensor, TensorShape expected, [CallerArgumentExpression(nameof(tensor))] string? name = null)
    {
        if (tensor.Shape != expected)
            throw new ArgumentException($"{name} has shape {tensor.Shape}; {expected} expected.", name);
    }

    public static void Length(Tensor tensor, long expected, [CallerArgumentExpression(nameof(tensor))] string? name = null)
    {
        if (tensor.Length != expected)
            throw new ArgumentException($"{name} has {tensor.Length} elements; {expected} expected.", name);
    }

    public static void AtLeast(Tensor tensor, long expected, [CallerArgumentExpression(nameof(tensor))] string? name = null)
    {
        if (tensor.Length < expected)
            throw new ArgumentException($"{name} has {tensor.Length} elements; at least {expected} expected.", name);
    }

    public static void Aligned(Tensor tensor, int bytes, [CallerArgumentExpression(nameof(tensor))] string? name = null)
    {
        if (!tensor.IsAligned(bytes))
            throw new ArgumentException($"{name} at 0x{tensor.Address:x} is not {bytes}-byte aligned, as the kernel's vector accesses need.", name);
    }

    public static void Positive(long value, [CallerArgumentExpression(nameof(value))] string? name = null)
    {
        if (value <= 0) throw new ArgumentOutOfRangeException(name, value, $"{name} must be positive.");
    }
}
