using System.Numerics;

namespace Keel.Native.Reference;

/// <summary>
/// The SwiGLU gate on a fused input gateUp [rows, 2F]: columns 0..F−1 are the gate g, columns F..2F−1 the up
/// projection u, and h [rows, F] = silu(g) ⊙ u with silu(g) = g·σ(g), σ(g) = 1 / (1 + e^(−g)). Backward:
/// dg = dh ⊙ u ⊙ σ(g)(1 + g(1 − σ(g))), du = dh ⊙ silu(g), written to dGateUp (overwritten) in the same layout.
/// Math in fp64.
/// </summary>
public static class SwiGlu
{
    /// <summary>h = silu(gate) ⊙ up.</summary>
    /// <param name="rows">Number of rows; may be 0.</param>
    /// <param name="ffn">F, the width of h; positive.</param>
    /// <param name="gateUp">Input [rows, 2F]: gate then up, per row.</param>
    /// <param name="h">Output [rows, F]; must not overlap gateUp.</param>
    /// <exception cref="ArgumentException">A size or a span's length is invalid, or h overlaps gateUp.</exception>
    public static void Forward<T>(int rows, int ffn, ReadOnlySpan<T> gateUp, Span<T> h)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Validate(rows, ffn, gateUp);
        Guard.Shape(h, nameof(h), rows, ffn);
        Guard.Disjoint(h, nameof(h), gateUp, nameof(gateUp));
        for (var r = 0; r < rows; r++)
        {
            for (var j = 0; j < ffn; j++)
            {
                double g = double.CreateTruncating(gateUp[r * 2 * ffn + j]), u = double.CreateTruncating(gateUp[r * 2 * ffn + ffn + j]);
                h[r * ffn + j] = T.CreateTruncating(g * Sigmoid(g) * u);
            }
        }
    }

    /// <summary>dGateUp = [dh ⊙ u ⊙ silu'(g), dh ⊙ silu(g)] with silu'(g) = σ(g)(1 + g(1 − σ(g))).</summary>
    /// <param name="rows">Number of rows; may be 0.</param>
    /// <param name="ffn">F; positive.</param>
    /// <param name="gateUp">Forward's input [rows, 2F].</param>
    /// <param name="dh">Gradient of h [rows, F].</param>
    /// <param name="dGateUp">Output, overwritten: gradient of gateUp [rows, 2F]; must not overlap gateUp or dh.</param>
    /// <exception cref="ArgumentException">A size or a span's length is invalid, or dGateUp overlaps an input.</exception>
    public static void Backward<T>(int rows, int ffn, ReadOnlySpan<T> gateUp, ReadOnlySpan<T> dh, Span<T> dGateUp)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Validate(rows, ffn, gateUp);
        Guard.Shape(dh, nameof(dh), rows, ffn);
        Guard.Shape(dGateUp, nameof(dGateUp), rows, 2, ffn);
        Guard.Disjoint(dGateUp, nameof(dGateUp), gateUp, nameof(gateUp));
        Guard.Disjoint(dGateUp, nameof(dGateUp), dh, nameof(dh));
        for (var r = 0; r < rows; r++)
        {
            for (var j = 0; j < ffn; j++)
            {
                int gate = r * 2 * ffn + j, up = gate + ffn;
                double g = double.CreateTruncating(gateUp[gate]), u = double.CreateTruncating(gateUp[up]);
                double grad = double.CreateTruncating(dh[r * ffn + j]), sigma = Sigmoid(g);
                dGateUp[gate] = T.CreateTruncating(grad * u * sigma * (1 + g * (1 - sigma)));
                dGateUp[up] = T.CreateTruncating(grad * g * sigma);
            }
        }
    }

    private static double Sigmoid(double g) => 1 / (1 + Math.Exp(-g));

    private static void Validate<T>(int rows, int ffn, ReadOnlySpan<T> gateUp)
    {
        Guard.NonNegative(rows, nameof(rows));
        Guard.Positive(ffn, nameof(ffn));
        Guard.Shape(gateUp, nameof(gateUp), rows, 2, ffn);
    }
}
