namespace Keel.Native.Reference;

/// <summary>Argument checks shared by the reference ops; each throws an <see cref="ArgumentException"/> naming the argument.</summary>
internal static class Guard
{
    public static void Positive(int value, string name)
    {
        if (value <= 0) throw new ArgumentOutOfRangeException(name, value, $"{name} must be positive.");
    }

    public static void NonNegative(int value, string name)
    {
        if (value < 0) throw new ArgumentOutOfRangeException(name, value, $"{name} must not be negative.");
    }

    public static void PositiveFinite(double value, string name)
    {
        if (!(double.IsFinite(value) && value > 0)) throw new ArgumentOutOfRangeException(name, value, $"{name} must be positive and finite.");
    }

    /// <summary>The span must hold exactly the product of <paramref name="shape"/> elements.</summary>
    public static void Shape<T>(ReadOnlySpan<T> span, string name, params ReadOnlySpan<int> shape)
    {
        // Saturate at 2^31: no span is longer, and a zero dimension still gives 0.
        long expected = 1;
        foreach (var d in shape) expected = Math.Min(expected * d, 1L << 31);
        if (span.Length != expected)
            throw new ArgumentException($"{name} has {span.Length} elements but its shape [{string.Join(", ", shape.ToArray())}] needs {expected}.", name);
    }

    /// <summary>Like <see cref="Shape{T}"/> when <paramref name="present"/>; otherwise the span must be empty.</summary>
    public static void ShapeIf<T>(bool present, ReadOnlySpan<T> span, string name, string absentBecause, params ReadOnlySpan<int> shape)
    {
        if (present) Shape(span, name, shape);
        else if (!span.IsEmpty) throw new ArgumentException($"{name} must be empty: {absentBecause}.", name);
    }

    /// <summary>The span is either empty or of the given shape.</summary>
    public static void ShapeOrEmpty<T>(ReadOnlySpan<T> span, string name, params ReadOnlySpan<int> shape)
    {
        if (!span.IsEmpty) Shape(span, name, shape);
    }

    /// <summary><paramref name="output"/> and <paramref name="input"/> share no memory.</summary>
    public static void Disjoint<TOut, TIn>(ReadOnlySpan<TOut> output, string name, ReadOnlySpan<TIn> input, string inputName)
        where TOut : unmanaged where TIn : unmanaged
    {
        if (output.IsEmpty || input.IsEmpty) return;
        var o = System.Runtime.InteropServices.MemoryMarshal.AsBytes(output);
        var i = System.Runtime.InteropServices.MemoryMarshal.AsBytes(input);
        if (o.Overlaps(i)) throw new ArgumentException($"{name} must not overlap {inputName}.", name);
    }

    /// <summary><paramref name="output"/> is either the very same memory as <paramref name="input"/> (in place) or disjoint from it.</summary>
    public static void SameOrDisjoint<T>(ReadOnlySpan<T> output, string name, ReadOnlySpan<T> input, string inputName)
    {
        if (output.Overlaps(input, out var offset) && (offset != 0 || output.Length != input.Length))
            throw new ArgumentException($"{name} must be either exactly {inputName} (in place) or not overlap it.", name);
    }
}
