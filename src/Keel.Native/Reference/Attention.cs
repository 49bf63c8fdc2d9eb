using System.Buffers;
using System.Numerics;
using System.Runtime.Intrinsics;

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
/// e_ij = exp(s_ij − max_j s_ij),   lse_i = max_j s_ij + log Σ_j e_ij,   P_ij = e_ij / Σ_j e_ij,   o_i = Σ_j P_ij v_j
/// </code>
/// Backward, from the saved o and lse (as FlashAttention does): P_ij = exp(s_ij − lse_i), dP_ij = dO_i·v_j,
/// D_i = dO_i·o_i, dS_ij = P_ij (dP_ij − D_i), dq_i = scale Σ_j dS_ij k_j, dk_j = scale Σ_i dS_ij q_i,
/// dv_j = Σ_i P_ij dO_i, with dk and dv summed over the query heads that share the kv head. All gradients are
/// overwritten.
/// <para>
/// Every sum runs in a fixed order: a dot product over d from 0, the sums over keys in j order, dk and dv over the
/// group's query heads and then the query rows in order. Heads are independent, so they run in parallel (forward: one
/// task per (batch, query head); backward: per (batch, kv head), which owns its dk and dv) and the results do not depend
/// on the thread count. Inside a head, K and V are widened to fp64 once, transposed where the loop runs over keys, and
/// four keys (or four of d) go through one Vector256 at a time, with a separate multiply and add so each lane is the
/// same sequential sum a scalar loop would compute.
/// </para>
/// </summary>
public static class Attention
{
    /// <summary>Below about this many multiply-adds of q·k a call runs on the calling thread: tasks would cost more than they save.</summary>
    private const long SequentialMultiplyAdds = 1L << 18;

    /// <summary>o = softmax(scale · q k^T, masked) v, and the row log-sum-exp.</summary>
    /// <param name="options">Shape, causality and scale.</param>
    /// <param name="q">Queries [B, S, Hq, D].</param>
    /// <param name="k">Keys [B, S, Hkv, D].</param>
    /// <param name="v">Values [B, S, Hkv, D].</param>
    /// <param name="output">Output o [B, S, Hq, D].</param>
    /// <param name="logSumExp">Output lse [B, Hq, S]: log Σ_j exp(s_ij) of the scaled, masked scores.</param>
    /// <exception cref="ArgumentException">A span's length does not match its shape, or QueryHeads is not a multiple of KvHeads.</exception>
    public static unsafe void Forward<T>(AttentionOptions options, ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v,
                                         Span<T> output, Span<T> logSumExp)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Validate(options, q, k, v, output, nameof(output));
        Guard.Shape(logSumExp, nameof(logSumExp), options.Batch, options.QueryHeads, options.Sequence);
        fixed (T* pq = q, pk = k, pv = v, po = output, pl = logSumExp)
        {
            var job = new Job<T>(options) { Q = pq, K = pk, V = pv, O = po, Lse = pl };
            Run(job, options.Batch * options.QueryHeads, job.ForwardHead);
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
    public static unsafe void Backward<T>(AttentionOptions options, ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v,
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
        fixed (T* pq = q, pk = k, pv = v, po = output, pl = logSumExp, pdo = dOutput, pdq = dq, pdk = dk, pdv = dv)
        {
            var job = new Job<T>(options) { Q = pq, K = pk, V = pv, O = po, Lse = pl, DO = pdo, DQ = pdq, DK = pdk, DV = pdv };
            Run(job, options.Batch * options.KvHeads, job.BackwardHead);
        }
    }

    /// <summary>Runs <paramref name="head"/> for every unit, each with scratch of its own thread, in parallel when it pays.</summary>
    private static void Run<T>(Job<T> job, int units, Action<int, double[]> head) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var scratch = job.ScratchLength;
        var pool = ArrayPool<double>.Shared;
        var o = job.Options;
        if (units == 1 || (long)o.Batch * o.QueryHeads * o.Sequence * o.Sequence * o.HeadDim < SequentialMultiplyAdds)
        {
            var buffer = pool.Rent(scratch);
            try
            {
                for (var unit = 0; unit < units; unit++) head(unit, buffer);
            }
            finally
            {
                pool.Return(buffer);
            }
            return;
        }
        Parallel.For(0, units, () => pool.Rent(scratch), (unit, _, buffer) =>
        {
            head(unit, buffer);
            return buffer;
        }, buffer => pool.Return(buffer));
    }

    /// <summary>One call's operands (pinned by the caller for the call's duration) and the work of one head.</summary>
    private sealed unsafe class Job<T>(AttentionOptions options) where T : unmanaged, IFloatingPointIeee754<T>
    {
        public T* Q, K, V, O, Lse, DO, DQ, DK, DV;
        public AttentionOptions Options { get; } = options;

        private readonly int _s = options.Sequence, _d = options.HeadDim, _group = options.QueryHeads / options.KvHeads;

        /// <summary>The sequence padded to whole vectors (keys run four at a time).</summary>
        private readonly int _sp = (options.Sequence + 3) & ~3;

        /// <summary>The head dimension padded to whole vectors (d runs four at a time).</summary>
        private readonly int _dp = (options.HeadDim + 3) & ~3;

        private readonly double _scale = options.EffectiveScale;

        /// <summary>Doubles of scratch one head needs (the backward's five [S, D] tables, a head's q and dO rows, its P and dS [S, S], and rows).</summary>
        public int ScratchLength => 5 * _sp * _dp + 2 * _s * _dp + 2 * _s * _sp + 2 * _sp + 3 * _dp;

        private int QueryIndex(int b, int i, int h) => ((b * _s + i) * Options.QueryHeads + h) * _d;

        private int KvIndex(int b, int j, int g) => ((b * _s + j) * Options.KvHeads + g) * _d;

        /// <summary>Rows of x [S, D] of kv head g widened into t, as [S][dp] (transposed: false) or [D][sp] (true), zero-padded.</summary>
        private void Gather(T* x, int b, int g, double* t, bool transposed)
        {
            new Span<double>(t, _sp * _dp).Clear();
            for (var j = 0; j < _s; j++)
            {
                var row = x + KvIndex(b, j, g);
                for (var d = 0; d < _d; d++)
                {
                    if (transposed) t[d * _sp + j] = double.CreateTruncating(row[d]);
                    else t[j * _dp + d] = double.CreateTruncating(row[d]);
                }
            }
        }

        private static void Widen(T* source, double* row, int length)
        {
            for (var d = 0; d < length; d++) row[d] = double.CreateTruncating(source[d]);
        }

        /// <summary>scores[j] = scale · Σ_d q[d] kt[d][j] for j &lt; keys, four keys per vector, each sum in d order.</summary>
        private void Scores(double* q, double* kt, int keys, double* scores, double scale)
        {
            for (var j = 0; j < keys; j += 4)
            {
                var sum = Vector256<double>.Zero;
                for (var d = 0; d < _d; d++) sum += Vector256.Create(q[d]) * Vector256.Load(kt + d * _sp + j);
                (sum * scale).Store(scores + j);
            }
        }

        /// <summary>acc[d] += w · row[d] over the padded head dimension.</summary>
        private void AddScaled(double* acc, double w, double* row)
        {
            var weight = Vector256.Create(w);
            for (var d = 0; d < _dp; d += 4) (Vector256.Load(acc + d) + weight * Vector256.Load(row + d)).Store(acc + d);
        }

        public void ForwardHead(int unit, double[] scratch)
        {
            int b = unit / Options.QueryHeads, h = unit % Options.QueryHeads, g = h / _group;
            fixed (double* buffer = scratch)
            {
                double* kt = buffer, vt = kt + _sp * _dp, scores = vt + _sp * _dp, q = scores + _sp, sum = q + _dp;
                Gather(K, b, g, kt, transposed: true);
                Gather(V, b, g, vt, transposed: false);
                for (var i = 0; i < _s; i++)
                {
                    var keys = Options.Causal ? i + 1 : _s;
                    Widen(Q + QueryIndex(b, i, h), q, _d);
                    Scores(q, kt, keys, scores, _scale);
                    var max = double.NegativeInfinity;
                    for (var j = 0; j < keys; j++) max = Math.Max(max, scores[j]);
                    var total = 0.0;
                    for (var j = 0; j < keys; j++)
                    {
                        scores[j] = Math.Exp(scores[j] - max);
                        total += scores[j];
                    }
                    Lse[(b * Options.QueryHeads + h) * _s + i] = T.CreateTruncating(max + Math.Log(total));
                    new Span<double>(sum, _dp).Clear();
                    for (var j = 0; j < keys; j++) AddScaled(sum, scores[j] / total, vt + j * _dp);
                    var o = O + QueryIndex(b, i, h);
                    for (var d = 0; d < _d; d++) o[d] = T.CreateTruncating(sum[d]);
                }
            }
        }

        public void BackwardHead(int unit, double[] scratch)
        {
            int b = unit / Options.KvHeads, g = unit % Options.KvHeads;
            var table = _sp * _dp;
            fixed (double* buffer = scratch)
            {
                double* kt = buffer, vt = kt + table, kRows = vt + table, dkSum = kRows + table, dvSum = dkSum + table;
                double* qRows = dvSum + table, dORows = qRows + _s * _dp, pRows = dORows + _s * _dp, dSRows = pRows + _s * _sp;
                double* o = dSRows + _s * _sp, dqSum = o + _dp;
                Gather(K, b, g, kt, transposed: true);
                Gather(V, b, g, vt, transposed: true);
                Gather(K, b, g, kRows, transposed: false);
                new Span<double>(dkSum, 2 * table).Clear();
                new Span<double>(qRows, 2 * _s * _dp).Clear();
                new Span<double>(o, _dp).Clear();
                for (var h = g * _group; h < (g + 1) * _group; h++)
                {
                    // Each query row: its probabilities, dS and dq.
                    for (var i = 0; i < _s; i++)
                    {
                        var keys = Options.Causal ? i + 1 : _s;
                        var at = QueryIndex(b, i, h);
                        double* q = qRows + i * _dp, dO = dORows + i * _dp, p = pRows + i * _sp, dS = dSRows + i * _sp;
                        Widen(Q + at, q, _d);
                        Widen(O + at, o, _d);
                        Widen(DO + at, dO, _d);
                        var lse = double.CreateTruncating(Lse[(b * Options.QueryHeads + h) * _s + i]);
                        var rowD = 0.0;
                        for (var d = 0; d < _d; d++) rowD += dO[d] * o[d];
                        Scores(q, kt, keys, p, _scale);
                        Scores(dO, vt, keys, dS, 1.0);
                        for (var j = 0; j < keys; j++)
                        {
                            p[j] = Math.Exp(p[j] - lse);
                            dS[j] = p[j] * (dS[j] - rowD);
                        }
                        new Span<double>(dqSum, _dp).Clear();
                        for (var j = 0; j < keys; j++) AddScaled(dqSum, dS[j], kRows + j * _dp);
                        var dq = DQ + at;
                        for (var d = 0; d < _d; d++) dq[d] = T.CreateTruncating(_scale * dqSum[d]);
                    }
                    // Each key: dk and dv over this head's query rows in order, four of d held in registers across the rows
                    // (the sums take the rows in the same order as adding row by row would).
                    for (var j = 0; j < _s; j++)
                    {
                        for (var d = 0; d < _dp; d += 4)
                        {
                            var dk = Vector256.Load(dkSum + j * _dp + d);
                            var dv = Vector256.Load(dvSum + j * _dp + d);
                            for (var i = Options.Causal ? j : 0; i < _s; i++)
                            {
                                dk += Vector256.Create(dSRows[i * _sp + j]) * Vector256.Load(qRows + i * _dp + d);
                                dv += Vector256.Create(pRows[i * _sp + j]) * Vector256.Load(dORows + i * _dp + d);
                            }
                            dk.Store(dkSum + j * _dp + d);
                            dv.Store(dvSum + j * _dp + d);
                        }
                    }
                }
                for (var j = 0; j < _s; j++)
                {
                    var kv = KvIndex(b, j, g);
                    for (var d = 0; d < _d; d++)
                    {
                        DK[kv + d] = T.CreateTruncating(_scale * dkSum[j * _dp + d]);
                        DV[kv + d] = T.CreateTruncating(dvSum[j * _dp + d]);
                    }
                }
            }
        }
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
