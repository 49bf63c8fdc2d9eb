using System.Buffers;
using System.Numerics;

namespace Keel.Native.Reference;

/// <summary>
/// The SwiGLU gate on a fused input gateUp [rows, 2F]: columns 0..F−1 are the gate g, columns F..2F−1 the up
/// projection u, and h [rows, F] = silu(g) ⊙ u with silu(g) = g·σ(g), σ(g) = 1 / (1 + e^(−g)). Backward:
/// dg = dh ⊙ u ⊙ σ(g)(1 + g(1 − σ(g))), du = dh ⊙ silu(g), written to dGateUp (overwritten) in the same layout.
/// Math in fp64. Each row is computed into fp64 scratch and then stored: writing dGateUp while reading gateUp element
/// by element stalls when the two lie a multiple of 4 KiB apart (the loads wait on stores to the same page offset: about
/// 3× slower, measured), which the model's activation arena does not rule out. Rows run in parallel for large inputs.
/// </summary>
public static class SwiGlu
{
    /// <summary>h = silu(gate) ⊙ up.</summary>
    /// <param name="rows">Number of rows; may be 0.</param>
    /// <param name="ffn">F, the width of h; positive.</param>
    /// <param name="gateUp">Input [rows, 2F]: gate then up, per row.</param>
    /// <param name="h">Output [rows, F]; must not overlap gateUp.</param>
    /// <exception cref="ArgumentException">A size or a span's length is invalid, or h overlaps gateUp.</exception>
    public static unsafe void Forward<T>(int rows, int ffn, ReadOnlySpan<T> gateUp, Span<T> h)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Validate(rows, ffn, gateUp);
        Guard.Shape(h, nameof(h), rows, ffn);
        Guard.Disjoint(h, nameof(h), gateUp, nameof(gateUp));
        fixed (T* pinnedInput = gateUp, pinnedOutput = h)
        {
            nint input = (nint)pinnedInput, output = (nint)pinnedOutput;
            RowRanges.For(rows, ffn, (first, end) =>
            {
                var row = ArrayPool<double>.Shared.Rent(ffn);
                for (var r = first; r < end; r++)
                {
                    T* gate = (T*)input + (long)r * 2 * ffn, up = gate + ffn;
                    for (var j = 0; j < ffn; j++)
                    {
                        double g = double.CreateTruncating(gate[j]), u = double.CreateTruncating(up[j]);
                        row[j] = g * Sigmoid(g) * u;
                    }
                    Store(row, (T*)output + (long)r * ffn, ffn);
                }
                ArrayPool<double>.Shared.Return(row);
            });
        }
    }

    /// <summary>dGateUp = [dh ⊙ u ⊙ silu'(g), dh ⊙ silu(g)] with silu'(g) = σ(g)(1 + g(1 − σ(g))).</summary>
    /// <param name="rows">Number of rows; may be 0.</param>
    /// <param name="ffn">F; positive.</param>
    /// <param name="gateUp">Forward's input [rows, 2F].</param>
    /// <param name="dh">Gradient of h [rows, F].</param>
    /// <param name="dGateUp">Output, overwritten: gradient of gateUp [rows, 2F]; must not overlap gateUp or dh.</param>
    /// <exception cref="ArgumentException">A size or a span's length is invalid, or dGateUp overlaps an input.</exception>
    public static unsafe void Backward<T>(int rows, int ffn, ReadOnlySpan<T> gateUp, ReadOnlySpan<T> dh, Span<T> dGateUp)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Validate(rows, ffn, gateUp);
        Guard.Shape(dh, nameof(dh), rows, ffn);
        Guard.Shape(dGateUp, nameof(dGateUp), rows, 2, ffn);
        Guard.Disjoint(dGateUp, nameof(dGateUp), gateUp, nameof(gateUp));
        Guard.Disjoint(dGateUp, nameof(dGateUp), dh, nameof(dh));
        fixed (T* pinnedInput = gateUp, pinnedGradient = dh, pinnedOutput = dGateUp)
        {
            nint input = (nint)pinnedInput, gradient = (nint)pinnedGradient, output = (nint)pinnedOutput;
            RowRanges.For(rows, ffn, (first, end) =>
            {
                var row = ArrayPool<double>.Shared.Rent(2 * ffn);
                for (var r = first; r < end; r++)
                {
                    T* gate = (T*)input + (long)r * 2 * ffn, up = gate + ffn, dRow = (T*)gradient + (long)r * ffn;
                    for (var j = 0; j < ffn; j++)
                    {
                        double g = double.CreateTruncating(gate[j]), u = double.CreateTruncating(up[j]);
                        double grad = double.CreateTruncating(dRow[j]), sigma = Sigmoid(g);
                        row[j] = grad * u * sigma * (1 + g * (1 - sigma));
                        row[ffn + j] = grad * g * sigma;
                    }
                    Store(row, (T*)output + (long)r * 2 * ffn, 2 * ffn);
                }
                ArrayPool<double>.Shared.Return(row);
            });
        }
    }

    private static double Sigmoid(double g) => 1 / (1 + Math.Exp(-g));

    private static unsafe void Store<T>(double[] row, T* destination, int length) where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (var j = 0; j < length; j++) destination[j] = T.CreateTruncating(row[j]);
    }

    private static void Validate<T>(int rows, int ffn, ReadOnlySpan<T> gateUp)
    {
        Guard.NonNegative(rows, nameof(rows));
        Guard.Positive(ffn, nameof(ffn));
        Guard.Shape(gateUp, nameof(gateUp), rows, 2, ffn);
    }
}
