using System.Numerics;

namespace Keel.Native.Reference;

/// <summary>
/// GELU in the tanh approximation, as cuBLASLt's GELU epilogue computes it, elementwise:
/// <code>
/// y  = 0.5·x·(1 + tanh(u)),   u = sqrt(2/π)·(x + 0.044715·x³)
/// dx = dy·(0.5·(1 + tanh(u)) + 0.5·x·(1 − tanh²(u))·sqrt(2/π)·(1 + 3·0.044715·x²))
/// </code>
/// Math in fp64. Both passes may run in place (y = x; dx = dy).
/// </summary>
public static class Gelu
{
    private const double Cubic = 0.044715;
    private static readonly double SqrtTwoOverPi = Math.Sqrt(2 / Math.PI);

    /// <summary>y = 0.5·x·(1 + tanh(sqrt(2/π)(x + 0.044715x³))).</summary>
    /// <param name="x">Input, any length.</param>
    /// <param name="y">Output of x's length; may be x itself.</param>
    /// <exception cref="ArgumentException">The lengths differ, or y partly overlaps x.</exception>
    public static void Forward<T>(ReadOnlySpan<T> x, Span<T> y)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Guard.Shape(y, nameof(y), x.Length);
        Guard.SameOrDisjoint(y, nameof(y), x, nameof(x));
        for (var i = 0; i < x.Length; i++)
        {
            var v = double.CreateTruncating(x[i]);
            y[i] = T.CreateTruncating(0.5 * v * (1 + Math.Tanh(SqrtTwoOverPi * (v + Cubic * v * v * v))));
        }
    }

    /// <summary>dx = dy · GELU'(x) (see the class summary).</summary>
    /// <param name="x">Forward's input.</param>
    /// <param name="dy">Gradient of y, x's length.</param>
    /// <param name="dx">Output, overwritten: gradient of x, x's length; may be dy itself, must not overlap x.</param>
    /// <exception cref="ArgumentException">The lengths differ, or dx overlaps x or partly overlaps dy.</exception>
    public static void Backward<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> dy, Span<T> dx)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Guard.Shape(dy, nameof(dy), x.Length);
        Guard.Shape(dx, nameof(dx), x.Length);
        Guard.SameOrDisjoint(dx, nameof(dx), dy, nameof(dy));
        Guard.Disjoint(dx, nameof(dx), x, nameof(x));
        for (var i = 0; i < x.Length; i++)
        {
            var v = double.CreateTruncating(x[i]);
            var t = Math.Tanh(SqrtTwoOverPi * (v + Cubic * v * v * v));
            var derivative = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * SqrtTwoOverPi * (1 + 3 * Cubic * v * v);
            dx[i] = T.CreateTruncating(double.CreateTruncating(dy[i]) * derivative);
        }
    }
}
