using System.Buffers;
using System.Numerics;

namespace Keel.Native.Reference;

/// <summary>The normalization used by <see cref="ResidualNorm"/>.</summary>
public enum NormKind
{
    /// <summary>RMSNorm: N(s) = g ⊙ s · rstd, rstd = 1 / sqrt(mean(s²) + eps). A gain, no bias.</summary>
    Rms,

    /// <summary>LayerNorm: N(s) = g ⊙ (s − mean(s)) · rstd + b, rstd = 1 / sqrt(var(s) + eps), biased variance.</summary>
    Layer,
}

/// <summary>
/// What one <see cref="ResidualNorm"/> computes: s = Alpha·x + f, y = OutputNorm ? N_out(s) : s,
/// z = InputNorm ? N_in(y) : y. Every value is checked when set (also through <c>with</c>).
/// </summary>
/// <param name="Kind">RMSNorm or LayerNorm, for both norms.</param>
/// <param name="Alpha">Scale of the residual stream x; positive and finite (Keel: L, the number of sub-layers).</param>
/// <param name="OutputNorm">Normalize the sum: y = N_out(s) (Keel, Post-LN, DeepNorm); otherwise y = s (Pre-LN).</param>
/// <param name="InputNorm">Also produce the next sub-layer's normalized input z = N_in(y) (Keel, Pre-LN).</param>
/// <param name="Epsilon">The eps inside both square roots; positive and finite.</param>
public sealed record ResidualNormOptions(NormKind Kind, float Alpha, bool OutputNorm, bool InputNorm, float Epsilon = 1e-5f)
{
    /// <summary>RMSNorm or LayerNorm, for both norms.</summary>
    public NormKind Kind { get; init => field = CheckKind(value); } = CheckKind(Kind);

    /// <summary>Scale of the residual stream x in s = Alpha·x + f; positive and finite.</summary>
    public float Alpha { get; init => field = CheckPositive(value, nameof(Alpha)); } = CheckPositive(Alpha, nameof(Alpha));

    /// <summary>The eps inside both square roots; positive and finite.</summary>
    public float Epsilon { get; init => field = CheckPositive(value, nameof(Epsilon)); } = CheckPositive(Epsilon, nameof(Epsilon));

    private static NormKind CheckKind(NormKind kind) =>
        Enum.IsDefined(kind) ? kind : throw new ArgumentOutOfRangeException(nameof(Kind), kind, "Unknown norm kind.");

    private static float CheckPositive(float value, string name)
    {
        Guard.PositiveFinite(value, name);
        return value;
    }
}

/// <summary>
/// Keel's fused residual + norm over [rows, hidden], one kernel per sub-layer boundary:
/// <code>
/// s = Alpha·x + f                      (f empty means f = 0)
/// y = OutputNorm ? N_out(s) : s        (the residual stream after this sub-layer)
/// z = InputNorm  ? N_in(y)  : y        (the next sub-layer's input; not stored without InputNorm)
/// </code>
/// with N an RMSNorm or a LayerNorm (<see cref="NormKind"/>). Forward saves, per row, rstd_out (and mean_out for
/// LayerNorm) of s and rstd_in (and mean_in) of y. Which variant ends each sub-layer of each architecture (Alpha,
/// OutputNorm, InputNorm) is written in <see cref="Model.ArchitectureRules"/>; with f empty, Alpha = 1 and no OutputNorm
/// it is a standalone norm: y = x and z = N(x) (the model's input stage).
/// Math in fp64, stored as T. Backward overwrites dx and df and accumulates (+=) the gain and bias gradients.
/// </summary>
public static class ResidualNorm
{
    /// <summary>Runs the forward pass; see the class summary for the formulas.</summary>
    /// <param name="options">Kind, Alpha and which norms run.</param>
    /// <param name="rows">Number of rows (tokens); may be 0.</param>
    /// <param name="hidden">Row length; positive.</param>
    /// <param name="x">The residual stream [rows, hidden].</param>
    /// <param name="f">The sub-layer's output [rows, hidden], or empty for f = 0.</param>
    /// <param name="gainOut">N_out's gain [hidden]; empty without OutputNorm.</param>
    /// <param name="biasOut">N_out's bias [hidden] for LayerNorm; empty otherwise.</param>
    /// <param name="gainIn">N_in's gain [hidden]; empty without InputNorm.</param>
    /// <param name="biasIn">N_in's bias [hidden] for LayerNorm; empty otherwise.</param>
    /// <param name="y">Output [rows, hidden]: N_out(s), or s.</param>
    /// <param name="z">Output [rows, hidden]: N_in(y); empty without InputNorm.</param>
    /// <param name="meanOut">Saved mean of s per row [rows] for LayerNorm with OutputNorm; empty otherwise.</param>
    /// <param name="rstdOut">Saved 1/sqrt(var + eps) (LayerNorm) or 1/sqrt(mean(s²) + eps) (RMSNorm) of s [rows]; empty without OutputNorm.</param>
    /// <param name="meanIn">Saved mean of y per row [rows] for LayerNorm with InputNorm; empty otherwise.</param>
    /// <param name="rstdIn">Saved rstd of y per row [rows]; empty without InputNorm.</param>
    /// <exception cref="ArgumentException">A size or a span's length does not match the options and shape.</exception>
    public static void Forward<T>(ResidualNormOptions options, int rows, int hidden,
                                  ReadOnlySpan<T> x, ReadOnlySpan<T> f,
                                  ReadOnlySpan<T> gainOut, ReadOnlySpan<T> biasOut, ReadOnlySpan<T> gainIn, ReadOnlySpan<T> biasIn,
                                  Span<T> y, Span<T> z,
                                  Span<T> meanOut, Span<T> rstdOut, Span<T> meanIn, Span<T> rstdIn)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        ValidateCommon(options, rows, hidden, x, f, y, gainOut, gainIn, meanOut, rstdOut, meanIn, rstdIn);
        ValidateNormParameters(options, options.OutputNorm, "OutputNorm", hidden, biasOut, nameof(biasOut));
        ValidateNormParameters(options, options.InputNorm, "InputNorm", hidden, biasIn, nameof(biasIn));
        Guard.ShapeIf(options.InputNorm, z, nameof(z), "InputNorm is off (z would equal y)", rows, hidden);

        bool layer = options.Kind == NormKind.Layer;
        double alpha = options.Alpha, eps = options.Epsilon;
        var scratch = ArrayPool<double>.Shared.Rent(hidden);
        try
        {
            var s = scratch.AsSpan(0, hidden);
            for (var r = 0; r < rows; r++)
            {
                var row = r * hidden;
                for (var j = 0; j < hidden; j++)
                    s[j] = alpha * double.CreateTruncating(x[row + j]) + (f.IsEmpty ? 0 : double.CreateTruncating(f[row + j]));
                var yRow = y.Slice(row, hidden);
                if (options.OutputNorm)
                {
                    var (mean, rstd) = Statistics(s, layer, eps);
                    if (layer) meanOut[r] = T.CreateTruncating(mean);
                    rstdOut[r] = T.CreateTruncating(rstd);
                    Normalize(s, mean, rstd, gainOut, biasOut, yRow);
                }
                else
                {
                    for (var j = 0; j < hidden; j++) yRow[j] = T.CreateTruncating(s[j]);
                }
                if (options.InputNorm)
                {
                    // N_in reads y as stored, exactly as the next kernel and the backward pass see it.
                    for (var j = 0; j < hidden; j++) s[j] = double.CreateTruncating(yRow[j]);
                    var (mean, rstd) = Statistics(s, layer, eps);
                    if (layer) meanIn[r] = T.CreateTruncating(mean);
                    rstdIn[r] = T.CreateTruncating(rstd);
                    Normalize(s, mean, rstd, gainIn, biasIn, z.Slice(row, hidden));
                }
            }
        }
        finally
        {
            ArrayPool<double>.Shared.Return(scratch);
        }
    }

    /// <summary>
    /// Runs the backward pass. With n the normalized row, (n = (v − mean)·rstd), dn = upstream ⊙ g and H = hidden,
    /// a norm's input gradient is rstd·(dn − mean(dn) − n·mean(dn ⊙ n)) for LayerNorm and
    /// rstd·(dn − n·mean(dn ⊙ n)) for RMSNorm; dg += upstream ⊙ n, db += upstream. In order:
    /// <code>
    /// dy_total = dy + (InputNorm ? N_in-backward(dz) : 0)     (dy empty means 0)
    /// ds       = OutputNorm ? N_out-backward(dy_total) : dy_total
    /// dx       = Alpha·ds,   df = ds
    /// </code>
    /// s is recomputed from x and f; N_in's normalized row comes from y and the saved statistics; z is not needed.
    /// </summary>
    /// <param name="options">The options forward ran with.</param>
    /// <param name="rows">Number of rows; may be 0.</param>
    /// <param name="hidden">Row length; positive.</param>
    /// <param name="x">Forward's x [rows, hidden].</param>
    /// <param name="f">Forward's f [rows, hidden], or empty if forward had none.</param>
    /// <param name="y">Forward's output y [rows, hidden].</param>
    /// <param name="gainOut">N_out's gain [hidden]; empty without OutputNorm.</param>
    /// <param name="gainIn">N_in's gain [hidden]; empty without InputNorm.</param>
    /// <param name="meanOut">Forward's saved meanOut ([rows] for LayerNorm with OutputNorm; empty otherwise).</param>
    /// <param name="rstdOut">Forward's saved rstdOut ([rows] with OutputNorm; empty otherwise).</param>
    /// <param name="meanIn">Forward's saved meanIn ([rows] for LayerNorm with InputNorm; empty otherwise).</param>
    /// <param name="rstdIn">Forward's saved rstdIn ([rows] with InputNorm; empty otherwise).</param>
    /// <param name="dy">Gradient from the residual path into y [rows, hidden], or empty for 0.</param>
    /// <param name="dz">Gradient into z [rows, hidden]; empty without InputNorm.</param>
    /// <param name="dx">Output, overwritten: the gradient of x [rows, hidden].</param>
    /// <param name="df">Output, overwritten: the gradient of f [rows, hidden]; empty exactly when f is.</param>
    /// <param name="dGainOut">Accumulated: N_out's gain gradient [hidden]; empty without OutputNorm.</param>
    /// <param name="dBiasOut">Accumulated: N_out's bias gradient [hidden] for LayerNorm; empty otherwise.</param>
    /// <param name="dGainIn">Accumulated: N_in's gain gradient [hidden]; empty without InputNorm.</param>
    /// <param name="dBiasIn">Accumulated: N_in's bias gradient [hidden] for LayerNorm; empty otherwise.</param>
    /// <exception cref="ArgumentException">A size or a span's length does not match the options and shape.</exception>
    public static void Backward<T>(ResidualNormOptions options, int rows, int hidden,
                                   ReadOnlySpan<T> x, ReadOnlySpan<T> f, ReadOnlySpan<T> y,
                                   ReadOnlySpan<T> gainOut, ReadOnlySpan<T> gainIn,
                                   ReadOnlySpan<T> meanOut, ReadOnlySpan<T> rstdOut, ReadOnlySpan<T> meanIn, ReadOnlySpan<T> rstdIn,
                                   ReadOnlySpan<T> dy, ReadOnlySpan<T> dz,
                                   Span<T> dx, Span<T> df,
                                   Span<T> dGainOut, Span<T> dBiasOut, Span<T> dGainIn, Span<T> dBiasIn)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        ValidateCommon(options, rows, hidden, x, f, y, gainOut, gainIn, meanOut, rstdOut, meanIn, rstdIn);
        Guard.ShapeOrEmpty(dy, nameof(dy), rows, hidden);
        Guard.ShapeIf(options.InputNorm, dz, nameof(dz), "InputNorm is off", rows, hidden);
        Guard.Shape(dx, nameof(dx), rows, hidden);
        Guard.ShapeIf(!f.IsEmpty, df, nameof(df), "f is empty", rows, hidden);
        Guard.ShapeIf(options.OutputNorm, dGainOut, nameof(dGainOut), "OutputNorm is off", hidden);
        Guard.ShapeIf(options.InputNorm, dGainIn, nameof(dGainIn), "InputNorm is off", hidden);
        ValidateNormParameters(options, options.OutputNorm, "OutputNorm", hidden, dBiasOut, nameof(dBiasOut));
        ValidateNormParameters(options, options.InputNorm, "InputNorm", hidden, dBiasIn, nameof(dBiasIn));

        bool layer = options.Kind == NormKind.Layer;
        double alpha = options.Alpha;
        var scratch = ArrayPool<double>.Shared.Rent(7 * hidden);
        try
        {
            var all = scratch.AsSpan(0, 7 * hidden);
            all.Clear();
            var n = all[..hidden];
            var dn = all.Slice(hidden, hidden);
            var dyTotal = all.Slice(2 * hidden, hidden);
            var gainOutSum = all.Slice(3 * hidden, hidden);
            var biasOutSum = all.Slice(4 * hidden, hidden);
            var gainInSum = all.Slice(5 * hidden, hidden);
            var biasInSum = all.Slice(6 * hidden, hidden);
            for (var r = 0; r < rows; r++)
            {
                var row = r * hidden;
                for (var j = 0; j < hidden; j++) dyTotal[j] = dy.IsEmpty ? 0 : double.CreateTruncating(dy[row + j]);
                if (options.InputNorm)
                {
                    double mean = layer ? double.CreateTruncating(meanIn[r]) : 0, rstd = double.CreateTruncating(rstdIn[r]);
                    for (var j = 0; j < hidden; j++)
                    {
                        double upstream = double.CreateTruncating(dz[row + j]);
                        n[j] = (double.CreateTruncating(y[row + j]) - mean) * rstd;
                        dn[j] = upstream * double.CreateTruncating(gainIn[j]);
                        gainInSum[j] += upstream * n[j];
                        biasInSum[j] += upstream;
                    }
                    NormInputGradient(layer, n, dn, rstd, dyTotal);
                }
                // ds lands in dyTotal: with OutputNorm it is rewritten as N_out's input gradient.
                if (options.OutputNorm)
                {
                    double mean = layer ? double.CreateTruncating(meanOut[r]) : 0, rstd = double.CreateTruncating(rstdOut[r]);
                    for (var j = 0; j < hidden; j++)
                    {
                        var s = alpha * double.CreateTruncating(x[row + j]) + (f.IsEmpty ? 0 : double.CreateTruncating(f[row + j]));
                        n[j] = (s - mean) * rstd;
                        dn[j] = dyTotal[j] * double.CreateTruncating(gainOut[j]);
                        gainOutSum[j] += dyTotal[j] * n[j];
                        biasOutSum[j] += dyTotal[j];
                    }
                    dyTotal.Clear();
                    NormInputGradient(layer, n, dn, rstd, dyTotal);
                }
                for (var j = 0; j < hidden; j++)
                {
                    dx[row + j] = T.CreateTruncating(alpha * dyTotal[j]);
                    if (!df.IsEmpty) df[row + j] = T.CreateTruncating(dyTotal[j]);
                }
            }
            AccumulateInto(dGainOut, gainOutSum);
            AccumulateInto(dBiasOut, biasOutSum);
            AccumulateInto(dGainIn, gainInSum);
            AccumulateInto(dBiasIn, biasInSum);
        }
        finally
        {
            ArrayPool<double>.Shared.Return(scratch);
        }
    }

    /// <summary>(mean, rstd) of one row: LayerNorm's mean and 1/sqrt(biased var + eps), or RMSNorm's 0 and 1/sqrt(mean(s²) + eps).</summary>
    private static (double Mean, double Rstd) Statistics(ReadOnlySpan<double> s, bool layer, double eps)
    {
        double mean = 0;
        if (layer)
        {
            foreach (var v in s) mean += v;
            mean /= s.Length;
        }
        double squares = 0;
        foreach (var v in s) squares += (v - mean) * (v - mean);
        return (mean, 1 / Math.Sqrt(squares / s.Length + eps));
    }

    /// <summary>output = g ⊙ (s − mean)·rstd (+ b when a bias is given).</summary>
    private static void Normalize<T>(ReadOnlySpan<double> s, double mean, double rstd, ReadOnlySpan<T> gain, ReadOnlySpan<T> bias, Span<T> output)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (var j = 0; j < s.Length; j++)
        {
            var v = double.CreateTruncating(gain[j]) * ((s[j] - mean) * rstd);
            if (!bias.IsEmpty) v += double.CreateTruncating(bias[j]);
            output[j] = T.CreateTruncating(v);
        }
    }

    /// <summary>target += rstd·(dn − mean(dn) − n·mean(dn ⊙ n)), without the mean(dn) term for RMSNorm.</summary>
    private static void NormInputGradient(bool layer, ReadOnlySpan<double> n, ReadOnlySpan<double> dn, double rstd, Span<double> target)
    {
        double meanDn = 0, meanDnN = 0;
        for (var j = 0; j < n.Length; j++)
        {
            meanDn += dn[j];
            meanDnN += dn[j] * n[j];
        }
        meanDn = layer ? meanDn / n.Length : 0;
        meanDnN /= n.Length;
        for (var j = 0; j < n.Length; j++) target[j] += rstd * (dn[j] - meanDn - n[j] * meanDnN);
    }

    private static void AccumulateInto<T>(Span<T> gradient, ReadOnlySpan<double> sum)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (var j = 0; j < gradient.Length; j++) gradient[j] = T.CreateTruncating(double.CreateTruncating(gradient[j]) + sum[j]);
    }

    private static void ValidateCommon<T>(ResidualNormOptions options, int rows, int hidden,
                                          ReadOnlySpan<T> x, ReadOnlySpan<T> f, ReadOnlySpan<T> y,
                                          ReadOnlySpan<T> gainOut, ReadOnlySpan<T> gainIn,
                                          ReadOnlySpan<T> meanOut, ReadOnlySpan<T> rstdOut, ReadOnlySpan<T> meanIn, ReadOnlySpan<T> rstdIn)
    {
        ArgumentNullException.ThrowIfNull(options);
        Guard.NonNegative(rows, nameof(rows));
        Guard.Positive(hidden, nameof(hidden));
        Guard.Shape(x, nameof(x), rows, hidden);
        Guard.ShapeOrEmpty(f, nameof(f), rows, hidden);
        Guard.Shape(y, nameof(y), rows, hidden);
        Guard.ShapeIf(options.OutputNorm, gainOut, nameof(gainOut), "OutputNorm is off", hidden);
        Guard.ShapeIf(options.InputNorm, gainIn, nameof(gainIn), "InputNorm is off", hidden);
        bool layer = options.Kind == NormKind.Layer;
        Guard.ShapeIf(options.OutputNorm && layer, meanOut, nameof(meanOut), options.OutputNorm ? "RMSNorm saves no mean" : "OutputNorm is off", rows);
        Guard.ShapeIf(options.OutputNorm, rstdOut, nameof(rstdOut), "OutputNorm is off", rows);
        Guard.ShapeIf(options.InputNorm && layer, meanIn, nameof(meanIn), options.InputNorm ? "RMSNorm saves no mean" : "InputNorm is off", rows);
        Guard.ShapeIf(options.InputNorm, rstdIn, nameof(rstdIn), "InputNorm is off", rows);
    }

    /// <summary>A bias (or its gradient) exists only for a LayerNorm that runs.</summary>
    private static void ValidateNormParameters<T>(ResidualNormOptions options, bool runs, string which, int hidden, ReadOnlySpan<T> bias, string name) =>
        Guard.ShapeIf(runs && options.Kind == NormKind.Layer, bias, name, runs ? "RMSNorm has no bias" : which + " is off", hidden);
}
