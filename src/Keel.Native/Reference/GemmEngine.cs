using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Keel.Native.Numerics;

namespace Keel.Native.Reference;

/// <summary>
/// The blocked fp32 GEMM behind <see cref="Gemm"/>, organised like BLIS. The output is cut into tiles of up to
/// 384 x 384 that run in parallel, each with its own packing buffers, so tiles never wait on each other. Inside a
/// tile, for each block of <see cref="KC"/> steps along k: the tile's columns of op(B) are packed into
/// micro-panels of <see cref="NR"/> columns, then, <see cref="MC"/> rows at a time, op(A) into micro-panels of
/// <see cref="MR"/> rows; the micro-kernel multiplies one A micro-panel by one B micro-panel into a 6 x 16
/// register tile. Packing converts bf16 operands to fp32 (exactly) and pads edges with zeros, so the micro-kernel
/// has no edge cases.
/// <para>
/// Summation order: the register tile is loaded from (and stored back to) a per-tile fp32 accumulator between
/// k-blocks, so every output element is the plain sequential chain acc = fma(a[i,p], b[p,j], acc) for
/// p = 0..k-1 starting from 0, whatever the tile sizes, the k-blocking or the thread count. The epilogue then
/// writes alpha * acc (beta = 0, C not read) or fma(beta, C, alpha * acc).
/// </para>
/// </summary>
internal static unsafe class GemmEngine
{
    /// <summary>Rows of the register tile: 6 x 16 floats are 12 ymm accumulators, with 2 for B and 1 for A (of 16 registers).</summary>
    public const int MR = 6;

    /// <summary>Columns of the register tile (two Vector256 of floats).</summary>
    public const int NR = 16;

    /// <summary>Depth of a packed block: a 16 x 256 B micro-panel (16 KiB) stays in L1 while A micro-panels stream past.</summary>
    public const int KC = 256;

    /// <summary>Rows of A packed at once: a 96 x 256 block (96 KiB) stays in L2 while every B micro-panel visits it.</summary>
    public const int MC = 96;

    /// <summary>How many k-steps ahead the transposed-A packing prefetches.</summary>
    private const int PrefetchAhead = 8;

    private const int MaxTileRows = 384, MaxTileCols = 384, MinTile = 48;

    /// <summary>op(B) up to this size (1 MiB of fp32) is packed once per GEMM rather than once per row of tiles.</summary>
    private const long SharedPackedBFloats = 1 << 18;

    /// <summary>Below about 128^3 multiply-adds the threads cost more than they save.</summary>
    private const long SequentialMultiplyAdds = 1L << 21;

    /// <summary>Whether the Vector256 + FMA micro-kernel runs on this CPU (otherwise the portable scalar one does).</summary>
    public static bool IsVectorized => Fma.IsSupported;

    /// <summary>
    /// C[m,n] = alpha * op(A) op(B) + beta * C over raw pointers (shapes already validated).
    /// <paramref name="maxDegreeOfParallelism"/> (-1 = all cores) and <paramref name="portable"/> (force the
    /// scalar micro-kernel) change the speed only, never the result.
    /// </summary>
    public static void Run<TIn, TOut>(bool transposeA, bool transposeB, int m, int n, int k, float alpha, TIn* a, TIn* b,
                                      float beta, TOut* c, int maxDegreeOfParallelism = -1, bool portable = false)
        where TIn : unmanaged where TOut : unmanaged
    {
        if (m == 0 || n == 0) return;
        var job = new Job<TIn, TOut>(transposeA, transposeB, m, n, k, alpha, a, b, beta, c, portable || !IsVectorized);
        try
        {
            if (job.TileCount == 1 || maxDegreeOfParallelism == 1 || (long)m * n * k < SequentialMultiplyAdds)
            {
                for (var t = 0; t < job.TileCount; t++) job.RunTile(t);
            }
            else
            {
                Parallel.For(0, job.TileCount, new ParallelOptions { MaxDegreeOfParallelism = maxDegreeOfParallelism }, job.RunTile);
            }
        }
        finally
        {
            job.Release();
        }
    }

    /// <summary>One GEMM: its operands and its tiling. Tiles are independent; <see cref="RunTile"/> may run on any thread.</summary>
    private sealed class Job<TIn, TOut>
        where TIn : unmanaged where TOut : unmanaged
    {
        private readonly bool _transA, _transB, _portable;
        private readonly int _m, _n, _k, _tileRows, _tileCols, _tilesN, _paddedN;

        /// <summary>op(B) packed once for every tile (micro-panels of k-block p0 from p0 · paddedN), or null when each tile packs its own.</summary>
        private readonly float[]? _sharedB;
        private readonly float _alpha, _beta;
        private readonly TIn* _a, _b;
        private readonly TOut* _c;

        public int TileCount { get; }

        public Job(bool transA, bool transB, int m, int n, int k, float alpha, TIn* a, TIn* b, float beta, TOut* c, bool portable)
        {
            (_transA, _transB, _m, _n, _k, _alpha, _beta, _portable) = (transA, transB, m, n, k, alpha, beta, portable);
            _a = a;
            _b = b;
            _c = c;

            // Shrink tiles until there are a few per core, for load balance; tile sizes stay multiples of MR and NR.
            int rows = MaxTileRows, cols = MaxTileCols, target = 4 * Environment.ProcessorCount;
            while (Count(m, rows) * Count(n, cols) < target)
            {
                if (rows > MinTile && (rows >= cols || cols <= MinTile)) rows /= 2;
                else if (cols > MinTile) cols /= 2;
                else break;
            }
            (_tileRows, _tileCols) = (rows, cols);
            _tilesN = Count(n, cols);
            TileCount = Count(m, rows) * _tilesN;

            // The model's GEMMs are small (n and k in the hundreds): every row of tiles would pack the same panels of B,
            // which costs as much as the multiply-adds there. Packed once here, the tiles share them.
            _paddedN = Count(n, NR) * NR;
            if (TileCount > _tilesN && (long)k * _paddedN <= SharedPackedBFloats)
            {
                _sharedB = ArrayPool<float>.Shared.Rent(k * _paddedN);
                fixed (float* packed = _sharedB)
                    for (var p0 = 0; p0 < k; p0 += KC) PackB(0, n, p0, Math.Min(KC, k - p0), packed + (long)p0 * _paddedN);
            }
        }

        /// <summary>Returns the shared packed B to the pool.</summary>
        public void Release()
        {
            if (_sharedB is not null) ArrayPool<float>.Shared.Return(_sharedB);
        }

        private static int Count(int size, int tile) => (size + tile - 1) / tile;

        public void RunTile(int tile)
        {
            int row0 = tile / _tilesN * _tileRows, col0 = tile % _tilesN * _tileCols;
            int rows = Math.Min(_tileRows, _m - row0), cols = Math.Min(_tileCols, _n - col0);
            int paddedRows = Count(rows, MR) * MR, ldAcc = Count(cols, NR) * NR;
            var pool = ArrayPool<float>.Shared;
            float[] acc = pool.Rent(paddedRows * ldAcc), packA = pool.Rent(Math.Min(MC, paddedRows) * KC), packB = _sharedB ?? pool.Rent(ldAcc * KC);
            try
            {
                fixed (float* pAcc = acc, pA = packA, pB = packB)
                {
                    Multiply(row0, rows, col0, cols, pAcc, ldAcc, pA, pB);
                    Epilogue(row0, rows, col0, cols, pAcc, ldAcc);
                }
            }
            finally
            {
                if (packB != _sharedB) pool.Return(packB);
                pool.Return(packA);
                pool.Return(acc);
            }
        }

        /// <summary>acc[rows, cols] = op(A)[rows, :] op(B)[:, cols], k-block by k-block.</summary>
        private void Multiply(int row0, int rows, int col0, int cols, float* acc, int ldAcc, float* packA, float* packB)
        {
            if (_k == 0) new Span<float>(acc, Count(rows, MR) * MR * ldAcc).Clear();
            int colPanels = Count(cols, NR);
            for (var p0 = 0; p0 < _k; p0 += KC)
            {
                var kc = Math.Min(KC, _k - p0);
                var panels = packB;
                if (_sharedB is null) PackB(col0, cols, p0, kc, packB);
                else panels = packB + (long)p0 * _paddedN + (long)col0 * kc;
                for (var ic = 0; ic < rows; ic += MC)
                {
                    var rowPanels = Count(Math.Min(MC, rows - ic), MR);
                    PackA(row0 + ic, Math.Min(MC, rows - ic), p0, kc, packA);
                    for (var jr = 0; jr < colPanels; jr++)
                    {
                        var bPanel = panels + jr * NR * kc;
                        for (var ir = 0; ir < rowPanels; ir++)
                        {
                            var cTile = acc + (ic + ir * MR) * ldAcc + jr * NR;
                            if (_portable) MicroKernelPortable(packA + ir * MR * kc, bPanel, kc, cTile, ldAcc, p0 > 0);
                            else MicroKernelFma(packA + ir * MR * kc, bPanel, kc, cTile, ldAcc, p0 > 0);
                        }
                    }
                }
            }
        }

        /// <summary>Packs op(A)[row0..row0+rows, p0..p0+kc) as micro-panels [kc][MR], zero rows past the edge.</summary>
        private void PackA(int row0, int rows, int p0, int kc, float* dst)
        {
            var panels = Count(rows, MR);
            if (_transA)
            {
                // A is stored [k, m]: step p's rows are contiguous, so read each step once across all panels
                // (panel by panel would revisit k lines a row-length apart, which alias in L1 when m is a power of 2).
                for (var p = 0; p < kc; p++)
                {
                    var src = _a + (long)(p0 + p) * _m + row0;
                    // Successive steps lie m floats apart, often a page or more: beyond the hardware prefetchers,
                    // so fetch the rows a few steps ahead (TN, k = 2048, 2 EPYC cores: roughly 140 -> 200 GFLOP/s, noisy host).
                    if (Sse.IsSupported && p + PrefetchAhead < kc)
                        for (var r = 0; r < rows; r += 16) Sse.Prefetch0(src + PrefetchAhead * (long)_m + r);
                    for (var panel = 0; panel < panels; panel++)
                    {
                        int valid = Math.Min(MR, rows - panel * MR);
                        var d = dst + panel * MR * kc + p * MR;
                        for (var r = 0; r < valid; r++) d[r] = Widen(src[panel * MR + r]);
                        for (var r = valid; r < MR; r++) d[r] = 0;
                    }
                }
                return;
            }
            // A is stored [m, k]: read each row along p and scatter it into its lane.
            for (var panel = 0; panel < panels; panel++, dst += MR * kc)
            {
                int first = row0 + panel * MR, valid = Math.Min(MR, rows - panel * MR);
                for (var r = 0; r < MR; r++)
                {
                    if (r < valid)
                    {
                        var src = _a + (long)(first + r) * _k + p0;
                        for (var p = 0; p < kc; p++) dst[p * MR + r] = Widen(src[p]);
                    }
                    else
                    {
                        for (var p = 0; p < kc; p++) dst[p * MR + r] = 0;
                    }
                }
            }
        }

        /// <summary>Packs op(B)[p0..p0+kc), col0..) as micro-panels [kc][NR], zero columns past the edge.</summary>
        private void PackB(int col0, int cols, int p0, int kc, float* dst)
        {
            for (var panel = 0; panel * NR < cols; panel++, dst += NR * kc)
            {
                int first = col0 + panel * NR, valid = Math.Min(NR, cols - panel * NR);
                if (_transB)
                {
                    // B is stored [n, k]: read each of the NR rows along p and scatter it into its lane.
                    for (var j = 0; j < NR; j++)
                    {
                        if (j < valid)
                        {
                            var src = _b + (long)(first + j) * _k + p0;
                            for (var p = 0; p < kc; p++) dst[p * NR + j] = Widen(src[p]);
                        }
                        else
                        {
                            for (var p = 0; p < kc; p++) dst[p * NR + j] = 0;
                        }
                    }
                }
                else
                {
                    // B is stored [k, n]: the NR values of one step p are contiguous.
                    for (var p = 0; p < kc; p++)
                    {
                        var src = _b + (long)(p0 + p) * _n + first;
                        var d = dst + p * NR;
                        if (valid == NR)
                        {
                            Widen16(src, d);
                        }
                        else
                        {
                            for (var j = 0; j < valid; j++) d[j] = Widen(src[j]);
                            for (var j = valid; j < NR; j++) d[j] = 0;
                        }
                    }
                }
            }
        }

        /// <summary>C = alpha * acc (beta = 0: C is not read) or C = fma(beta, C, alpha * acc), rounded to TOut.</summary>
        private void Epilogue(int row0, int rows, int col0, int cols, float* acc, int ldAcc)
        {
            for (var i = 0; i < rows; i++)
            {
                var accRow = acc + i * ldAcc;
                var cRow = _c + (long)(row0 + i) * _n + col0;
                var j = 0;
                if (typeof(TOut) == typeof(float) && !_portable)
                {
                    // Eight at a time: the same product, and the same single rounding of the fused multiply-add, per element.
                    var alpha = Vector256.Create(_alpha);
                    var beta = Vector256.Create(_beta);
                    for (; j + 8 <= cols; j += 8)
                    {
                        var r = alpha * Vector256.Load(accRow + j);
                        if (_beta != 0) r = Fma.MultiplyAdd(beta, Vector256.Load((float*)cRow + j), r);
                        r.Store((float*)cRow + j);
                    }
                }
                for (; j < cols; j++)
                {
                    var r = _alpha * accRow[j];
                    if (_beta != 0) r = MathF.FusedMultiplyAdd(_beta, Widen(cRow[j]), r);
                    cRow[j] = Narrow<TOut>(r);
                }
            }
        }
    }

    /// <summary>
    /// c[6, 16] (row stride <paramref name="ldc"/>) = (accumulate ? c : 0) + a[kc][6]^T b[kc][16] with one fused
    /// multiply-add per element and step, in step order.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MicroKernelFma(float* a, float* b, int kc, float* c, int ldc, bool accumulate)
    {
        Vector256<float> c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
        if (accumulate)
        {
            c00 = Vector256.Load(c); c01 = Vector256.Load(c + 8);
            c10 = Vector256.Load(c + ldc); c11 = Vector256.Load(c + ldc + 8);
            c20 = Vector256.Load(c + 2 * ldc); c21 = Vector256.Load(c + 2 * ldc + 8);
            c30 = Vector256.Load(c + 3 * ldc); c31 = Vector256.Load(c + 3 * ldc + 8);
            c40 = Vector256.Load(c + 4 * ldc); c41 = Vector256.Load(c + 4 * ldc + 8);
            c50 = Vector256.Load(c + 5 * ldc); c51 = Vector256.Load(c + 5 * ldc + 8);
        }
        else
        {
            c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = Vector256<float>.Zero;
        }
        for (var p = 0; p < kc; p++, a += MR, b += NR)
        {
            var b0 = Vector256.Load(b);
            var b1 = Vector256.Load(b + 8);
            var ai = Vector256.Create(a[0]);
            c00 = Fma.MultiplyAdd(ai, b0, c00); c01 = Fma.MultiplyAdd(ai, b1, c01);
            ai = Vector256.Create(a[1]);
            c10 = Fma.MultiplyAdd(ai, b0, c10); c11 = Fma.MultiplyAdd(ai, b1, c11);
            ai = Vector256.Create(a[2]);
            c20 = Fma.MultiplyAdd(ai, b0, c20); c21 = Fma.MultiplyAdd(ai, b1, c21);
            ai = Vector256.Create(a[3]);
            c30 = Fma.MultiplyAdd(ai, b0, c30); c31 = Fma.MultiplyAdd(ai, b1, c31);
            ai = Vector256.Create(a[4]);
            c40 = Fma.MultiplyAdd(ai, b0, c40); c41 = Fma.MultiplyAdd(ai, b1, c41);
            ai = Vector256.Create(a[5]);
            c50 = Fma.MultiplyAdd(ai, b0, c50); c51 = Fma.MultiplyAdd(ai, b1, c51);
        }
        c00.Store(c); c01.Store(c + 8);
        c10.Store(c + ldc); c11.Store(c + ldc + 8);
        c20.Store(c + 2 * ldc); c21.Store(c + 2 * ldc + 8);
        c30.Store(c + 3 * ldc); c31.Store(c + 3 * ldc + 8);
        c40.Store(c + 4 * ldc); c41.Store(c + 4 * ldc + 8);
        c50.Store(c + 5 * ldc); c51.Store(c + 5 * ldc + 8);
    }

    /// <summary>The same contract as <see cref="MicroKernelFma"/> in scalar code, for CPUs without FMA3 (bit-identical results).</summary>
    private static void MicroKernelPortable(float* a, float* b, int kc, float* c, int ldc, bool accumulate)
    {
        if (!accumulate)
            for (var r = 0; r < MR; r++) new Span<float>(c + r * ldc, NR).Clear();
        for (var p = 0; p < kc; p++, a += MR, b += NR)
        {
            for (var r = 0; r < MR; r++)
            {
                var ar = a[r];
                var row = c + r * ldc;
                for (var j = 0; j < NR; j++) row[j] = MathF.FusedMultiplyAdd(ar, b[j], row[j]);
            }
        }
    }

    /// <summary>The exact fp32 value of a float or bf16 element.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Widen<T>(T value) where T : unmanaged
    {
        if (typeof(T) == typeof(float)) return Unsafe.As<T, float>(ref value);
        if (typeof(T) == typeof(BFloat16)) return Unsafe.As<T, BFloat16>(ref value).ToSingle();
        throw new NotSupportedException($"GEMM operands are float or BFloat16, not {typeof(T)}.");
    }

    /// <summary>Widens 16 contiguous float or bf16 elements to fp32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Widen16<T>(T* src, float* dst) where T : unmanaged
    {
        if (typeof(T) == typeof(float))
        {
            Vector256.Load((float*)src).Store(dst);
            Vector256.Load((float*)src + 8).Store(dst + 8);
        }
        else
        {
            // A bf16 is the top half of its fp32: widen to 32 bits and shift into place.
            var (lo, hi) = Vector256.Widen(Vector256.Load((ushort*)src));
            Vector256.ShiftLeft(lo, 16).AsSingle().Store(dst);
            Vector256.ShiftLeft(hi, 16).AsSingle().Store(dst + 8);
        }
    }

    /// <summary>Stores an fp32 result as float, or rounds it to bf16 (nearest, ties to even).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static T Narrow<T>(float value) where T : unmanaged
    {
        if (typeof(T) == typeof(float)) return Unsafe.As<float, T>(ref value);
        if (typeof(T) == typeof(BFloat16))
        {
            var rounded = BFloat16.FromSingle(value);
            return Unsafe.As<BFloat16, T>(ref rounded);
        }
        throw new NotSupportedException($"GEMM outputs are float or BFloat16, not {typeof(T)}.");
    }
}
