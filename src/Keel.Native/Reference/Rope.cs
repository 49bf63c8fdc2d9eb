using System.Numerics;

namespace Keel.Native.Reference;

/// <summary>
/// Rotary position embedding in the Llama "rotate half" convention, on x [batch, seq, heads, headDim] (D = headDim,
/// even). The position of sequence index t is t + positionOffset. For i &lt; D/2, with freq_i = theta^(−2i/D) and
/// a = position · freq_i:
/// <code>
/// out[i]       = x[i]·cos a − x[i + D/2]·sin a
/// out[i + D/2] = x[i + D/2]·cos a + x[i]·sin a
/// </code>
/// Each pair is rotated by the angle a, so the backward pass is the rotation by −a. Angles, sines and cosines are
/// computed in fp64. Both passes may run in place (output the very same memory as the input).
/// </summary>
public static class Rope
{
    /// <summary>The base of the frequencies in Llama and in Keel: 10000.</summary>
    public const float DefaultTheta = 10000f;

    /// <summary>out = RoPE(x): each pair (x[i], x[i + D/2]) rotated by position · theta^(−2i/D).</summary>
    /// <param name="batch">Batch size; may be 0.</param>
    /// <param name="sequence">Sequence length; may be 0.</param>
    /// <param name="heads">Number of heads; positive.</param>
    /// <param name="headDim">Head dimension D; positive and even.</param>
    /// <param name="x">Input [batch, sequence, heads, headDim].</param>
    /// <param name="output">Output of the same shape; may be x itself.</param>
    /// <param name="theta">Frequency base; greater than 1 and finite.</param>
    /// <param name="positionOffset">Position of sequence index 0; not negative.</param>
    /// <exception cref="ArgumentException">A size, a span's length, theta or the offset is invalid, or output partly overlaps x.</exception>
    public static void Forward<T>(int batch, int sequence, int heads, int headDim, ReadOnlySpan<T> x, Span<T> output,
                                  float theta = DefaultTheta, int positionOffset = 0)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Validate(batch, sequence, heads, headDim, x, nameof(x), output, nameof(output), theta, positionOffset);
        Rotate(batch, sequence, heads, headDim, x, output, theta, positionOffset, sign: 1);
    }

    /// <summary>dx = RoPE⁻¹(dOutput): each pair rotated by −position · theta^(−2i/D) (the transpose of the rotation).</summary>
    /// <param name="batch">Batch size; may be 0.</param>
    /// <param name="sequence">Sequence length; may be 0.</param>
    /// <param name="heads">Number of heads; positive.</param>
    /// <param name="headDim">Head dimension D; positive and even.</param>
    /// <param name="dOutput">Gradient of the output [batch, sequence, heads, headDim].</param>
    /// <param name="dx">Output, overwritten: gradient of x, same shape; may be dOutput itself.</param>
    /// <param name="theta">The theta forward used.</param>
    /// <param name="positionOffset">The offset forward used.</param>
    /// <exception cref="ArgumentException">A size, a span's length, theta or the offset is invalid, or dx partly overlaps dOutput.</exception>
    public static void Backward<T>(int batch, int sequence, int heads, int headDim, ReadOnlySpan<T> dOutput, Span<T> dx,
                                   float theta = DefaultTheta, int positionOffset = 0)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Validate(batch, sequence, heads, headDim, dOutput, nameof(dOutput), dx, nameof(dx), theta, positionOffset);
        Rotate(batch, sequence, heads, headDim, dOutput, dx, theta, positionOffset, sign: -1);
    }

    private static void Rotate<T>(int batch, int sequence, int heads, int headDim, ReadOnlySpan<T> input, Span<T> output,
                                  float theta, int positionOffset, int sign)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var half = headDim / 2;
        for (var t = 0; t < sequence; t++)
        {
            var position = (double)(t + positionOffset);
            for (var i = 0; i < half; i++)
            {
                var angle = sign * position * Math.Pow(theta, -2.0 * i / headDim);
                var (sin, cos) = Math.SinCos(angle);
                for (var b = 0; b < batch; b++)
                {
                    for (var h = 0; h < heads; h++)
                    {
                        var at = ((b * sequence + t) * heads + h) * headDim + i;
                        // Read both halves before writing either: the pass may run in place.
                        double x0 = double.CreateTruncating(input[at]), x1 = double.CreateTruncating(input[at + half]);
                        output[at] = T.CreateTruncating(x0 * cos - x1 * sin);
                        output[at + half] = T.CreateTruncating(x1 * cos + x0 * sin);
                    }
                }
            }
        }
    }

    private static void Validate<T>(int batch, int sequence, int heads, int headDim, ReadOnlySpan<T> input, string inputName,
                                    ReadOnlySpan<T> output, string outputName, float theta, int positionOffset)
    {
        Guard.NonNegative(batch, nameof(batch));
        Guard.NonNegative(sequence, nameof(sequence));
        Guard.Positive(heads, nameof(heads));
        Guard.Positive(headDim, nameof(headDim));
        if (headDim % 2 != 0) throw new ArgumentException($"headDim must be even, not {headDim}.", nameof(headDim));
        if (!(float.IsFinite(theta) && theta > 1)) throw new ArgumentOutOfRangeException(nameof(theta), theta, "theta must be greater than 1 and finite.");
        Guard.NonNegative(positionOffset, nameof(positionOffset));
        Guard.Shape(input, inputName, batch, sequence, heads, headDim);
        Guard.Shape(output, outputName, batch, sequence, heads, headDim);
        Guard.SameOrDisjoint(output, outputName, input, inputName);
    }
}
