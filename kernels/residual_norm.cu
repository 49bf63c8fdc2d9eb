// residual_norm.cu — Keel's fused residual + norm at a sub-layer boundary, forward and backward. The math is
// that of Keel.Native.Reference.ResidualNorm (the tests' oracle).
//
// Forward, per row of H elements (N is RMSNorm or LayerNorm, eps inside the square root):
//   s = alpha*x + f                                    fp32; f may be absent (f = 0)
//   y = OUT_NORM ? g_out*((s - mu_s)*r_s) + b_out : s  fp32, the residual stream
//   z = IN_NORM  ? g_in *((y - mu_y)*r_y) + b_in  : y  bf16, the next GEMM's operand (without IN_NORM: optional)
//   RMSNorm: mu = 0, r = 1/sqrt(mean(v^2) + eps), no bias; LayerNorm: mu = mean(v), r = 1/sqrt(mean((v-mu)^2) + eps).
//   Saved per row: r_s (and mu_s) with OUT_NORM, r_y (and mu_y) with IN_NORM; nothing else, since backward
//   recomputes s from x and f, and N_in's normalized row from y.
// Backward. With n = (v - mu)*r a norm's normalized row and dn = upstream*g, its input gradient is
//   r*(dn - mean(dn) - n*mean(dn*n))  (RMSNorm: without mean(dn));  dg += upstream*n,  db += upstream.
//   t  = dy + (IN_NORM ? N_in backward of dz : dz)     dy, and dz without IN_NORM, may be absent (0)
//   ds = OUT_NORM ? N_out backward of t : t
//   dx = alpha*ds, df = ds (in f's type)
//   Gain and bias gradients, deterministic and without float atomics: each thread sums its columns over the
//   rows it visits in registers; the block adds its row groups in a fixed order into partials[block][p][H]
//   (p: g_out, b_out, g_in, b_in, those that exist); keel_residual_norm_gain_finalize adds the blocks' partials
//   in block order into the gradients (+=). The order depends only on the grid the launcher picks (from the
//   shape and the SM count), so a run repeats bit for bit on the same GPU.
//
// Bytes each kernel must move (E = rows*H; Keel's general sub-layer: f bf16, z and dz bf16):
//   forward:  read x 4E + f 2E, write y 4E + z 2E = 12 B per element; plus gains/biases 4H each (cached) and
//             4 B per saved statistic per row. (fp32 f: +2 B; no f: -2 B; no z: -2 B.)
//   backward: read x 4E + f 2E (with OUT_NORM), y 4E (with IN_NORM), dy 4E, dz 2E; write dx 4E, df 2E
//             = 22 B per element; plus statistics, gains, and the partials: blocks*P*H*4 B written here and
//             read by the finalize (about 1% at 16384 x 1024).
// FLOPs per element, one per add, subtract or multiply (an FMA is two), the per-row square roots and divisions
// not counted (the launcher reports these same figures to the profiler, and the planner prices recomputation by them):
//   forward:  2 for s, then per norm 4 with RMSNorm (square and sum, scale by r, gain) or 8 with LayerNorm (sum for
//             the mean, subtract, square and sum, subtract, scale, gain, bias);
//   backward: 1 for dx = alpha*ds; N_in 10 with RMSNorm (n, dn, dg, sum(dn*n), the input gradient's 4) or 14 with
//             LayerNorm (n's subtract, db, sum(dn), the mean's subtract); N_out 2 more than N_in (it recomputes s);
//             1 to add dz without IN_NORM. The finalize adds 1 per partial.
//   Keel's general sub-layer (RMSNorm, both norms): 10 forward, 23 backward, far below what the bytes allow at any
//   GPU's FLOP/byte ratio: bandwidth bound.
//
// Launch shape. A row belongs to a group of T threads; each thread holds CHUNKS chunks of 8 consecutive
// elements in registers (a chunk is one 16-byte bf16 vector, or two 16-byte fp32 vectors); chunk c of group
// thread t is the row's chunk c*T + t, so one load instruction of a group covers T consecutive chunks. T is
// the smallest power of two (up to 32; several rows per warp, shuffle reductions) or multiple of 32 (several
// warps per row; warp sums added through shared memory) with T*CHUNKS*8 >= H:
//   forward  CHUNKS = 4: H = 128 -> 4 threads, 1024 -> 32 (one warp), 2048 -> 64, 4096 -> 128, 8192 -> 256;
//            blocks of 256 threads (floor(256/T) rows), one row per group, grid = ceil(rows / rows per block).
//   backward CHUNKS = 2, since it holds more per element plus the gradient sums: H = 128 -> 8 threads,
//            1024 -> 64, 4096 -> 256, 8192 -> 512;
//            blocks of max(T, 256) threads; persistent: the groups stride over the rows, the grid is at most
//            2 blocks of 256 threads per SM (one of 512), so the partials stay small.
//   finalize 256 threads = 32 columns x 8 slices of the blocks, grid = ceil(P*H / 32).
// T is a run-time argument: it only enters index arithmetic and group-uniform branches outside the element
// loops (whose trip counts are the compile-time CHUNKS), and it lets one specialization serve every H.
// Likewise the optional tensors (f, z without IN_NORM, dy, dz without IN_NORM, df) are null pointers tested
// uniformly per chunk, which costs nothing measurable in a memory-bound loop and keeps the specializations
// to NORM_KIND (0 RMSNorm, 1 LayerNorm) x F_TYPE (float, bf16) x OUT_NORM x IN_NORM.
// Pointers are 16-byte aligned and H is a multiple of 8 (the launcher checks both).
#include "common.cuh"

#if !defined(NORM_KIND) || !defined(F_TYPE) || !defined(OUT_NORM) || !defined(IN_NORM)
#error "residual_norm.cu needs NORM_KIND (0 RMSNorm, 1 LayerNorm), F_TYPE (float or bf16), OUT_NORM and IN_NORM (0 or 1)"
#endif

typedef F_TYPE f_t;
constexpr bool kLayer = NORM_KIND == 1;
constexpr bool kOutNorm = OUT_NORM != 0;
constexpr bool kInNorm = IN_NORM != 0;
constexpr int kChunk = 8;
constexpr int kForwardChunks = 4, kBackwardChunks = 2;
constexpr int kForwardMaxThreads = 256, kBackwardMaxThreads = 512;
// Three forward blocks per SM allow 85 registers: a row's 32 elements per thread fit without spilling with
// bf16 f (fp32 f spills a few bytes), and 768 threads x 192 bytes in flight per SM are far more than the
// memory latency needs.
constexpr int kForwardMinBlocks = 3;
// Gain and bias gradient vectors, in partials order: g_out (b_out), g_in (b_in).
constexpr int kOutParams = kOutNorm ? (kLayer ? 2 : 1) : 0;
constexpr int kInParams = kInNorm ? (kLayer ? 2 : 1) : 0;
constexpr int kParams = kOutParams + kInParams;
constexpr int kFinalizeSlices = 8;

// ----------------------------------------------------------------------------------------------------------
// Chunks: 8 consecutive elements as floats.

__device__ __forceinline__ void load_chunk(const float* p, float (&v)[kChunk]) {
    const Packed128<float> lo = load128(p), hi = load128(p + 4);
    for (int k = 0; k < 4; k++) {
        v[k] = lo.v[k];
        v[4 + k] = hi.v[k];
    }
}

__device__ __forceinline__ void load_chunk(const bf16* p, float (&v)[kChunk]) {
    const Packed128<bf16> packed = load128(p);
    for (int k = 0; k < kChunk; k++) v[k] = bf16_to_float(packed.v[k]);
}

__device__ __forceinline__ void store_chunk(float* p, const float (&v)[kChunk]) {
    Packed128<float> lo, hi;
    for (int k = 0; k < 4; k++) {
        lo.v[k] = v[k];
        hi.v[k] = v[4 + k];
    }
    store128(p, lo);
    store128(p + 4, hi);
}

__device__ __forceinline__ void store_chunk(bf16* p, const float (&v)[kChunk]) {
    Packed128<bf16> packed;
    u32* pairs = reinterpret_cast<u32*>(packed.v);  // one cvt.rn.bf16x2 per pair
    for (int k = 0; k < kChunk / 2; k++) pairs[k] = pack_bf16x2(v[2 * k], v[2 * k + 1]);
    store128(p, packed);
}

// ----------------------------------------------------------------------------------------------------------
// Row groups.

struct RowGroup {
    int threads;  // T, threads per row
    int lane;     // this thread's place in its group
    int index;    // the group's place in the block
    int count;    // groups (rows at a time) per block
};

__device__ __forceinline__ RowGroup row_group(int threads_per_row) {
    return RowGroup{threads_per_row, (int)threadIdx.x % threads_per_row, (int)threadIdx.x / threads_per_row,
                    (int)blockDim.x / threads_per_row};
}

// Sums each v[i] over the row group and leaves the totals in every thread of it. Groups of up to 32 threads
// are aligned lane ranges of one warp, which xor shuffles below the group width never leave; larger groups
// are whole warps whose totals meet in scratch (N*32 floats) and are added in warp order. Every thread of the
// block must call this equally often, rows or no rows, since it may hold a barrier.
template <int N>
__device__ __forceinline__ void group_sum(float (&v)[N], int threads, float* scratch) {
    const int width = threads < 32 ? threads : 32;
    for (int offset = width / 2; offset > 0; offset /= 2)
        for (int i = 0; i < N; i++) v[i] += __shfl_xor_sync(0xffffffffu, v[i], offset);
    if (threads <= 32) return;
    const int warp = threadIdx.x / 32, warps = threads / 32, first = warp - warp % warps;
    if (threadIdx.x % 32 == 0)
        for (int i = 0; i < N; i++) scratch[i * 32 + warp] = v[i];
    __syncthreads();
    for (int i = 0; i < N; i++) {
        float total = 0.0f;
        for (int w = first; w < first + warps; w++) total += scratch[i * 32 + w];
        v[i] = total;
    }
    __syncthreads();
}

// Forward norm of the row held in v (zeros outside the row), in place: v = g*((v - mu)*r) + b. Two passes over
// registers for LayerNorm (mean, then squared deviations), so no cancellation in the variance.
template <int C>
__device__ __forceinline__ void normalize(float (&v)[C][kChunk], const RowGroup& g, bool valid, int chunks, int hidden,
                                          const float* __restrict__ gain, const float* __restrict__ bias, float eps,
                                          float* scratch, float& mean, float& rstd) {
    mean = 0.0f;
    if (kLayer) {
        float sum[1] = {0.0f};
        for (int c = 0; c < C; c++)
            for (int k = 0; k < kChunk; k++) sum[0] += v[c][k];
        group_sum(sum, g.threads, scratch);
        mean = sum[0] / (float)hidden;
    }
    float squares[1] = {0.0f};
    for (int c = 0; c < C; c++) {
        if (!valid || c * g.threads + g.lane >= chunks) continue;
        for (int k = 0; k < kChunk; k++) {
            const float d = v[c][k] - mean;
            squares[0] += d * d;
        }
    }
    group_sum(squares, g.threads, scratch);
    rstd = 1.0f / sqrtf(squares[0] / (float)hidden + eps);
    for (int c = 0; c < C; c++) {
        const int chunk = c * g.threads + g.lane;
        if (!valid || chunk >= chunks) continue;
        float gv[kChunk], bv[kChunk] = {};
        load_chunk(gain + chunk * kChunk, gv);
        if (kLayer) load_chunk(bias + chunk * kChunk, bv);
        for (int k = 0; k < kChunk; k++) v[c][k] = gv[k] * ((v[c][k] - mean) * rstd) + bv[k];
    }
}

extern "C" __global__ void __launch_bounds__(kForwardMaxThreads, kForwardMinBlocks)
keel_residual_norm_forward(const float* __restrict__ x, const f_t* __restrict__ f,
                           const float* __restrict__ gain_out, const float* __restrict__ bias_out,
                           const float* __restrict__ gain_in, const float* __restrict__ bias_in,
                           float* __restrict__ y, bf16* __restrict__ z,
                           float* __restrict__ mean_out, float* __restrict__ rstd_out,
                           float* __restrict__ mean_in, float* __restrict__ rstd_in,
                           int rows, int hidden, int threads_per_row, float alpha, float eps) {
    __shared__ float scratch[32];
    const RowGroup g = row_group(threads_per_row);
    const i64 row = (i64)blockIdx.x * g.count + g.index;
    const bool valid = row < rows;  // groups past the last row still join the reductions' barriers
    const int chunks = hidden / kChunk;
    const i64 offset = row * hidden;

    float v[kForwardChunks][kChunk];
    for (int c = 0; c < kForwardChunks; c++) {
        const int chunk = c * g.threads + g.lane;
        float xv[kChunk], fv[kChunk] = {};
        if (valid && chunk < chunks) {
            load_chunk(x + offset + chunk * kChunk, xv);
            if (f != nullptr) load_chunk(f + offset + chunk * kChunk, fv);
            for (int k = 0; k < kChunk; k++) v[c][k] = alpha * xv[k] + fv[k];
        } else {
            for (int k = 0; k < kChunk; k++) v[c][k] = 0.0f;
        }
    }

    if (kOutNorm) {
        float mean, rstd;
        normalize(v, g, valid, chunks, hidden, gain_out, bias_out, eps, scratch, mean, rstd);
        if (valid && g.lane == 0) {
            if (kLayer) mean_out[row] = mean;
            rstd_out[row] = rstd;
        }
    }
    for (int c = 0; c < kForwardChunks; c++) {
        const int chunk = c * g.threads + g.lane;
        if (valid && chunk < chunks) store_chunk(y + offset + chunk * kChunk, v[c]);
    }

    if (kInNorm) {
        // N_in reads y exactly as stored (fp32), as the backward pass will.
        float mean, rstd;
        normalize(v, g, valid, chunks, hidden, gain_in, bias_in, eps, scratch, mean, rstd);
        if (valid && g.lane == 0) {
            if (kLayer) mean_in[row] = mean;
            rstd_in[row] = rstd;
        }
    }
    if (kInNorm || z != nullptr) {
        for (int c = 0; c < kForwardChunks; c++) {
            const int chunk = c * g.threads + g.lane;
            if (valid && chunk < chunks) store_chunk(z + offset + chunk * kChunk, v[c]);
        }
    }
}

// ----------------------------------------------------------------------------------------------------------
// Backward.

// Adds one norm's input gradient to t, given its upstream gradient (up), normalized row (n) and gain:
// t += r*(dn - mean(dn) - n*mean(dn*n)), dn = up*gain; and its gain/bias gradient sums. For N_out, t is the
// upstream itself: the caller passes a zeroed t and up = the old t.
template <int C>
__device__ __forceinline__ void norm_backward(float (&t)[C][kChunk], const float (&up)[C][kChunk], const float (&n)[C][kChunk],
                                              const RowGroup& g, bool valid, int chunks, int hidden, float rstd,
                                              const float* __restrict__ gain, float (&dgain)[C][kChunk],
                                              float (&dbias)[C][kChunk], float* scratch) {
    float dn[C][kChunk];
    float sums[2] = {0.0f, 0.0f};  // sum(dn), sum(dn*n)
    for (int c = 0; c < C; c++) {
        const int chunk = c * g.threads + g.lane;
        if (!valid || chunk >= chunks) {
            for (int k = 0; k < kChunk; k++) dn[c][k] = 0.0f;
            continue;
        }
        float gv[kChunk];
        load_chunk(gain + chunk * kChunk, gv);
        for (int k = 0; k < kChunk; k++) {
            dn[c][k] = up[c][k] * gv[k];
            dgain[c][k] += up[c][k] * n[c][k];
            if (kLayer) dbias[c][k] += up[c][k];
            sums[0] += dn[c][k];
            sums[1] += dn[c][k] * n[c][k];
        }
    }
    group_sum(sums, g.threads, scratch);
    const float mean_dn = kLayer ? sums[0] / (float)hidden : 0.0f, mean_dn_n = sums[1] / (float)hidden;
    for (int c = 0; c < C; c++)
        for (int k = 0; k < kChunk; k++) t[c][k] += rstd * (dn[c][k] - mean_dn - n[c][k] * mean_dn_n);
}

// Writes one gradient sum of this block to partials (H floats): the block's row groups hold the same columns
// and are added in group order through stage (blockDim.x*8 floats).
template <int C>
__device__ __forceinline__ void write_partial(const float (&sum)[C][kChunk], float* __restrict__ partial, const RowGroup& g,
                                              int chunks, float* stage) {
#pragma unroll  // sum[c] must stay in registers; the barriers inside keep the compiler from unrolling on its own
    for (int c = 0; c < C; c++) {
        const int chunk = c * g.threads + g.lane;
        if (g.count == 1) {
            if (chunk < chunks) store_chunk(partial + chunk * kChunk, sum[c]);
        } else {
            for (int k = 0; k < kChunk; k++) stage[threadIdx.x * kChunk + k] = sum[c][k];
            __syncthreads();
            if (g.index == 0 && chunk < chunks) {
                float total[kChunk] = {};
                for (int j = 0; j < g.count; j++)
                    for (int k = 0; k < kChunk; k++) total[k] += stage[(j * g.threads + g.lane) * kChunk + k];
                store_chunk(partial + chunk * kChunk, total);
            }
            __syncthreads();
        }
    }
}

extern "C" __global__ void __launch_bounds__(kBackwardMaxThreads, 1)
keel_residual_norm_backward(const float* __restrict__ x, const f_t* __restrict__ f, const float* __restrict__ y,
                            const float* __restrict__ gain_out, const float* __restrict__ gain_in,
                            const float* __restrict__ mean_out, const float* __restrict__ rstd_out,
                            const float* __restrict__ mean_in, const float* __restrict__ rstd_in,
                            const float* __restrict__ dy, const bf16* __restrict__ dz,
                            float* __restrict__ dx, f_t* __restrict__ df, float* __restrict__ partials,
                            int rows, int hidden, int threads_per_row, float alpha) {
    constexpr int C = kBackwardChunks;
    __shared__ float scratch[2 * 32];
    const RowGroup g = row_group(threads_per_row);
    const int chunks = hidden / kChunk;
    // This thread's columns' gradient sums over every row it visits; those of absent params are never used.
    float dgain_out[C][kChunk] = {}, dbias_out[C][kChunk] = {}, dgain_in[C][kChunk] = {}, dbias_in[C][kChunk] = {};

    // The loop bound is the same for the whole block, so every group reaches every barrier.
    for (i64 first = (i64)blockIdx.x * g.count; first < rows; first += (i64)gridDim.x * g.count) {
        const i64 row = first + g.index;
        const bool valid = row < rows;
        const i64 offset = row * hidden;

        float t[C][kChunk];  // the gradient arriving at y, then at s
        for (int c = 0; c < C; c++) {
            const int chunk = c * g.threads + g.lane;
            for (int k = 0; k < kChunk; k++) t[c][k] = 0.0f;
            if (valid && chunk < chunks && dy != nullptr) load_chunk(dy + offset + chunk * kChunk, t[c]);
        }

        if (kInNorm) {
            const float mean = kLayer && valid ? mean_in[row] : 0.0f, rstd = valid ? rstd_in[row] : 0.0f;
            float n[C][kChunk], up[C][kChunk];
            for (int c = 0; c < C; c++) {
                const int chunk = c * g.threads + g.lane;
                for (int k = 0; k < kChunk; k++) n[c][k] = up[c][k] = 0.0f;
                if (!valid || chunk >= chunks) continue;
                load_chunk(y + offset + chunk * kChunk, n[c]);
                load_chunk(dz + offset + chunk * kChunk, up[c]);
                for (int k = 0; k < kChunk; k++) n[c][k] = (n[c][k] - mean) * rstd;
            }
            norm_backward(t, up, n, g, valid, chunks, hidden, rstd, gain_in, dgain_in, dbias_in, scratch);
        } else if (dz != nullptr) {
            // Without N_in, z is y itself: its gradient joins the residual path's.
            for (int c = 0; c < C; c++) {
                const int chunk = c * g.threads + g.lane;
                if (!valid || chunk >= chunks) continue;
                float dv[kChunk];
                load_chunk(dz + offset + chunk * kChunk, dv);
                for (int k = 0; k < kChunk; k++) t[c][k] += dv[k];
            }
        }

        if (kOutNorm) {
            const float mean = kLayer && valid ? mean_out[row] : 0.0f, rstd = valid ? rstd_out[row] : 0.0f;
            float n[C][kChunk], up[C][kChunk];
            for (int c = 0; c < C; c++) {
                const int chunk = c * g.threads + g.lane;
                for (int k = 0; k < kChunk; k++) {
                    n[c][k] = 0.0f;
                    up[c][k] = t[c][k];
                    t[c][k] = 0.0f;
                }
                if (!valid || chunk >= chunks) continue;
                float xv[kChunk], fv[kChunk] = {};
                load_chunk(x + offset + chunk * kChunk, xv);
                if (f != nullptr) load_chunk(f + offset + chunk * kChunk, fv);
                for (int k = 0; k < kChunk; k++) n[c][k] = ((alpha * xv[k] + fv[k]) - mean) * rstd;
            }
            norm_backward(t, up, n, g, valid, chunks, hidden, rstd, gain_out, dgain_out, dbias_out, scratch);
        }

        for (int c = 0; c < C; c++) {
            const int chunk = c * g.threads + g.lane;
            if (!valid || chunk >= chunks) continue;
            float scaled[kChunk];
            for (int k = 0; k < kChunk; k++) scaled[k] = alpha * t[c][k];
            store_chunk(dx + offset + chunk * kChunk, scaled);
            if (df != nullptr) store_chunk(df + offset + chunk * kChunk, t[c]);
        }
    }

    if (kParams > 0) {
        __shared__ float stage[kBackwardMaxThreads * kChunk];
        float* block_partials = partials + (i64)blockIdx.x * kParams * hidden;
        if (kOutNorm) write_partial(dgain_out, block_partials, g, chunks, stage);
        if (kOutNorm && kLayer) write_partial(dbias_out, block_partials + hidden, g, chunks, stage);
        if (kInNorm) write_partial(dgain_in, block_partials + kOutParams * hidden, g, chunks, stage);
        if (kInNorm && kLayer) write_partial(dbias_in, block_partials + (kOutParams + 1) * hidden, g, chunks, stage);
    }
}

// gradient_p[j] += sum over b = 0..blocks-1 (in order) of partials[b][p][j], for p < kParams, j < H. Thread
// (slice, lane) of a block adds blocks slice, slice+8, ... of column blockIdx.x*32 + lane (coalesced across lanes);
// the 8 slice sums are then added in slice order. grad0..3 are the gradients in partials order.
extern "C" __global__ void __launch_bounds__(32 * kFinalizeSlices)
keel_residual_norm_gain_finalize(const float* __restrict__ partials, int blocks, int hidden, float* __restrict__ grad0,
                                 float* __restrict__ grad1, float* __restrict__ grad2, float* __restrict__ grad3) {
    __shared__ float sums[kFinalizeSlices][32];
    const int lane = threadIdx.x % 32, slice = threadIdx.x / 32;
    const i64 columns = (i64)kParams * hidden;
    const i64 column = (i64)blockIdx.x * 32 + lane;
    float sum = 0.0f;
    if (column < columns)
        for (int b = slice; b < blocks; b += kFinalizeSlices) sum += partials[b * columns + column];
    sums[slice][lane] = sum;
    __syncthreads();
    if (slice == 0 && column < columns) {
        float total = 0.0f;
        for (int s = 0; s < kFinalizeSlices; s++) total += sums[s][lane];
        const int p = (int)(column / hidden), j = (int)(column % hidden);
        float* grad = p == 0 ? grad0 : p == 1 ? grad1 : p == 2 ? grad2 : grad3;
        grad[j] += total;
    }
}
