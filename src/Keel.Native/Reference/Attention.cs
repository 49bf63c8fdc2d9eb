using System.Buffers;
using System.Numerics;

namespace Keel.Native.Reference;

/// <summary>
/// Shape and flavour of a scaled dot-product attention: q [Batch, Sequence, QueryHeads, HeadDim], k and v
/// [Batch, Sequence, KvHeads, HeadDim]. Grouped-query: QueryHeads is a multiple of KvHeads and query head h reads
/// kv head h / (QueryHeads / KvHeads). Every value is checked when set (also through <c>with</c>).
/// </summary>
/// <param name="Batch">Batch size; positive.</param>
/// <param name="Sequence">Sequence length of queries and keys; positive.</param>
/// <param name="QueryHeads">Number of query heads; a positive multiple of KvHeads.</param>
/// <param name="KvHeads">Number of key/value heads; positive.</param>
/// <param name="HeadDim">Head dimension D; positive.</param>
/// <param name="Causal">Query i sees keys j ≤ i only.</param>
/// <param name="Scale">Factor on q·k; null means 1/sqrt(HeadDim). Positive and finite when given.</param>
public sealed record AttentionOptions(int Batch, int Sequence, int QueryHeads, int KvHeads, int HeadDim, bool Causal = true, float? Scale = null)
{
    /// <summary>Batch size; positive.</summary>
    public int Batch { get; init => field = CheckPositive(value, nameof(Batch)); } = CheckPositive(Batch, nameof(Batch));

    /// <summary>Sequence length of queries and keys; positive.</summary>
    public int Sequence { get; init => field = CheckPositive(value, nameof(Sequence)); } = CheckPositive(Sequence, nameof(Sequence));

    /// <summary>Number of query heads; a positive multiple of <see cref="KvHeads"/> (checked by the ops, so <c>with</c> can change both).</summary>
    public int QueryHeads { get; init => field = CheckPositive(value, nameof(QueryHeads)); } = CheckPositive(QueryHeads, nameof(QueryHeads));

    /// <summary>Number of key/value heads; positive.</summary>
    public int KvHeads { get; init => field = CheckPositive(value, nameof(KvHeads)); } = CheckPositive(KvHeads, nameof(KvHeads));

    /// <summary>Head dimension D; positive.</summary>
    public int HeadDim { get; init => field = CheckPositive(value, nameof(HeadDim)); } = CheckPositive(HeadDim, nameof(HeadDim));

    /// <summary>Factor on q·k; null means 1/sqrt(HeadDim).</summary>
    public float? Scale { get; init => field = CheckScale(value); } = CheckScale(Scale);

    /// <summary>The scale in use: <see cref="Scale"/>, or 1/sqrt(HeadDim) computed in fp64.</summary>
    public double EffectiveScale => Scale ?? 1 / Math.Sqrt(HeadDim);

    /// <summary>The forward's FLOPs as FlashAttention counts them: 4 S² D Hq B, halved under the causal mask (the backward does 2.5 times as many).</summary>
    public double ForwardFlops => 4.0 * Sequence * (double)Sequence * HeadDim * QueryHeads * Batch / (Causal ? 2 : 1);

    private static int CheckPositive(int value, string name)
    {
        Guard.Positive(value, name);
        return value;
    }

    private static float? CheckScale(float? scale)
    {
        if (scale is { } s) Guard.PositiveFinite(s, nameof(Scale));
        return scale;
    }
}

/// <summary>
/// Scaled dot-product attention, the plain O(S²) way with fp64 accumulation. For a query row i of head h (kv head g):
/// <code>
/// s_ij = scale · q_i·k_j   (j ≤ i when causal)
/// lse_i = log Σ_j exp(s_ij),   P_ij = exp(s_ij − lse_i),   o_i = Σ_j P_ij v_j
/// </code>
/// Backward, from the saved o and lse (as FlashAttention does): dP_ij = dO_i·v_j, D_i = dO_i·o_i,
/// dS_ij = P_ij (dP_ij − D_i), dq_i = scale Σ_j dS_ij k_j, dk_j = scale Σ_i dS_ij q_i, dv_j = Σ_i P_ij dO_i, with dk
/// and dv summed over the query heads that share the kv head. All gradients are overwritten.
/// </summary>
public static class Attention
{
    /// <summary>o = softmax(scale · q k^T, masked) v, and the row log-sum-exp.</summary>
    /// <param name="options">Shape, causality and scale.</param>
    /// <param name="q">Queries [B, S, Hq, D].</param>
    /// <param name="k">Keys [B, S, Hkv, D].</param>
    /// <param name="v">Values [B, S, Hkv, D].</param>
    /// <param name="output">Output o [B, S, Hq, D].</param>
    /// <param name="logSumExp">Output lse [B, Hq, S]: log Σ_j exp(s_ij) of the scaled, masked scores.</param>
    /// <exception cref="ArgumentException">A span's length does not match its shape, or QueryHeads is not a multiple of KvHeads.</exception>
    public static void Forward<T>(AttentionOptions options, ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v,
                                  Span<T> output, Span<T> logSumExp)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Validate(options, q, k, v, output, nameof(output));
        Guard.Shape(logSumExp, nameof(logSumExp), options.Batch, options.QueryHeads, options.Sequence);

        int seq = options.Sequence, dim = options.HeadDim, group = options.QueryHeads / options.KvHeads;
        var scale = options.EffectiveScale;
        var pool = ArrayPool<double>.Shared;
        double[] scores = pool.Rent(seq), sum = pool.Rent(dim);
        try
        {
            for (var b = 0; b < options.Batch; b++)
            for (var h = 0; h < options.QueryHeads; h++)
            for (var i = 0; i < seq; i++)
            {
                var keys = options.Causal ? i + 1 : seq;
                var qi = q.Slice(QueryIndex(options, b, i, h), dim);
                var max = double.NegativeInfinity;
                for (var j = 0; j < keys; j++)
                {
                    scores[j] = scale * Dot(qi, k.Slice(KvIndex(options, b, j, h / group), dim));
                    max = Math.Max(max, scores[j]);
                }
                var total = 0.0;
                for (var j = 0; j < keys; j++) total += Math.Exp(scores[j] - max);
                var lse = max + Math.Log(total);
                logSumExp[(b * options.QueryHeads + h) * seq + i] = T.CreateTruncating(lse);

                Array.Clear(sum, 0, dim);
                for (var j = 0; j < keys; j++)
                {
                    var p = Math.Exp(scores[j] - lse);
                    var vj = v.Slice(KvIndex(options, b, j, h / group), dim);
                    for (var d = 0; d < dim; d++) sum[d] += p * double.CreateTruncating(vj[d]);
                }
                var oi = output.Slice(QueryIndex(options, b, i, h), dim);
                for (var d = 0; d < dim; d++) oi[d] = T.CreateTruncating(sum[d]);
            }
        }
        finally
        {
            pool.Return(sum);
            pool.Return(scores);
        }
    }

    /// <summary>dq, dk, dv from q, k, v, the saved o and lse, and dO (see the class summary for the formulas).</summary>
    /// <param name="options">The options forward ran with.</param>
    /// <param name="q">Queries [B, S, Hq, D].</param>
    /// <param name="k">Keys [B, S, Hkv, D].</param>
    /// <param name="v">Values [B, S, Hkv, D].</param>
    /// <param name="output">Forward's o [B, S, Hq, D].</param>
    /// <param name="logSumExp">Forward's lse [B, Hq, S].</param>
    /// <param name="dOutput">Gradient of o [B, S, Hq, D].</param>
    /// <param name="dq">Output, overwritten: gradient of q [B, S, Hq, D].</param>
    /// <param name="dk">Output, overwritten: gradient of k [B, S, Hkv, D].</param>
    /// <param name="dv">Output, overwritten: gradient of v [B, S, Hkv, D].</param>
    /// <exception cref="ArgumentException">A span's length does not match its shape, or QueryHeads is not a multiple of KvHeads.</exception>
    public static void Backward<T>(AttentionOptions options, ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v,
                                   ReadOnlySpan<T> output, ReadOnlySpan<T> logSumExp, ReadOnlySpan<T> dOutput,
                                   Span<T> dq, Span<T> dk, Span<T> dv)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Validate(options, q, k, v, output, nameof(output));
        Guard.Shape(logSumExp, nameof(logSumExp), options.Batch, options.QueryHeads, options.Sequence);
        Guard.Shape(dOutput, nameof(dOutput), options.Batch, options.Sequence, options.QueryHeads, options.HeadDim);
        Guard.Shape(dq, nameof(dq), options.Batch, options.Sequence, options.QueryHeads, options.HeadDim);
        Guard.Shape(dk, nameof(dk), options.Batch, options.Sequence, options.KvHeads, options.HeadDim);
        Guard.Shape(dv, nameof(dv), options.Batch, options.Sequence, options.KvHeads, options.HeadDim);

        int seq = options.Sequence, dim = options.HeadDim, group = options.QueryHeads / options.KvHeads;
        var scale = options.EffectiveScale;
        var pool = ArrayPool<double>.Shared;
        double[] dkSum = pool.Rent(seq * dim), dvSum = pool.Rent(seq * dim), dqSum = pool.Rent(dim);
        try
        {
            for (var b = 0; b < options.Batch; b++)
            for (var g = 0; g < options.KvHeads; g++)
            {
                Array.Clear(dkSum, 0, seq * dim);
                Array.Clear(dvSum, 0, seq * dim);
                for (var h = g * group; h < (g + 1) * group; h++)
                for (var i = 0; i < seq; i++)
                {
                    var keys = options.Causal ? i + 1 : seq;
                    var at = QueryIndex(options, b, i, h);
                    ReadOnlySpan<T> qi = q.Slice(at, dim), oi = output.Slice(at, dim), dOi = dOutput.Slice(at, dim);
                    var lse = double.CreateTruncating(logSumExp[(b * options.QueryHeads + h) * seq + i]);
                    var rowD = Dot(dOi, oi);
                    Array.Clear(dqSum, 0, dim);
                    for (var j = 0; j < keys; j++)
                    {
                        var kv = KvIndex(options, b, j, g);
                        ReadOnlySpan<T> kj = k.Slice(kv, dim), vj = v.Slice(kv, dim);
                        var p = Math.Exp(scale * Dot(qi, kj) - lse);
                        var dS = p * (Dot(dOi, vj) - rowD);
                        for (var d = 0; d < dim; d++)
                        {
                            dqSum[d] += dS * double.CreateTruncating(kj[d]);
                            dkSum[j * dim + d] += dS * double.CreateTruncating(qi[d]);
                            dvSum[j * dim + d] += p * double.CreateTruncating(dOi[d]);
                        }
                    }
                    for (var d = 0; d < dim; d++) dq[at + d] = T.CreateTruncating(scale * dqSum[d]);
                }
                for (var j = 0; j < seq; j++)
                {
                    var kv = KvIndex(options, b, j, g);
                    for (var d = 0; d < dim; d++)
                    {
                        dk[kv + d] = T.CreateTruncating(scale * dkSum[j * dim + d]);
                        dv[kv + d] = T.CreateTruncating(dvSum[j * dim + d]);
                    }
                }
            }
        }
        finally
        {
            pool.Return(dqSum);
            pool.Return(dvSum);
            pool.Return(dkSum);
        }
    }

    private static int QueryIndex(AttentionOptions o, int b, int i, int h) => ((b * o.Sequence + i) * o.QueryHeads + h) * o.HeadDim;

    private static int KvIndex(AttentionOptions o, int b, int j, int g) => ((b * o.Sequence + j) * o.KvHeads + g) * o.HeadDim;

    private static double Dot<T>(ReadOnlySpan<T> a, ReadOnlySpan<T> b)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var sum = 0.0;
        for (var d = 0; d < a.Length; d++) sum += double.CreateTruncating(a[d]) * double.CreateTruncating(b[d]);
        return sum;
    }

    private static void Validate<T>(AttentionOptions options, ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v,
                                    ReadOnlySpan<T> output, string outputName)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.QueryHeads % options.KvHeads != 0)
            throw new ArgumentException($"QueryHeads ({options.QueryHeads}) must be a multiple of KvHeads ({options.KvHeads}).", nameof(options));
        Guard.Shape(q, nameof(q), options.Batch, options.Sequence, options.QueryHeads, options.HeadDim);
        Guard.Shape(k, nameof(k), options.Batch, options.Sequence, options.KvHeads, options.HeadDim);
        Guard.Shape(v, nameof(v), options.Batch, options.Sequence, options.KvHeads, options.HeadDim);
        Guard.Shape(output, outputName, options.Batch, options.Sequence, options.QueryHeads, options.HeadDim);
    }
}
