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

    /// <summary>The leading columns that count in rows of <paramref name="rowLength"/> whose remaining columns are padding: 1 to rowLength.</summary>
    public static void CountedColumns(int columns, long rowLength, [CallerArgumentExpression(nameof(columns))] string? name = null)
    {
        if (columns <= 0 || columns > rowLength)
            throw new ArgumentException($"{name} ({columns}) must be positive and at most the row length {rowLength} (the columns after it are padding).", name);
    }

    public static void Positive(long value, [CallerArgumentExpression(nameof(value))] string? name = null)
    {
        if (value <= 0) throw new ArgumentOutOfRangeException(name, value, $"{name} must be positive.");
    }
}
