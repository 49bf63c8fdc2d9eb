// attention.cu — causal or full scaled dot-product attention with grouped-query heads, FlashAttention-2 style
// (the s x s score matrix is never stored), on tensor cores (mma.sync m16n8k16, bf16 in, fp32 accumulate).
//
// Layout: q, o, dq, do [B, S, Hq, D]; k, v, dk, dv [B, S, Hkv, D], all bf16; lse [B, Hq, S] fp32. Query head h reads
// kv head h / (Hq / Hkv). The backward's row statistics (lse log2 e, Dsum) are pairs [B, Hq, S2, 2] fp32 in its
// workspace, S2 = S rounded up to even, so a query block's pairs start 16-byte aligned for cp.async whatever S is.
// scale = 1/sqrt(D) unless given; exponentials are taken base 2 (scores multiplied by scale * log2 e, lse kept in
// natural log), so each probability costs one EX2.
//
// Forward, per query block of BM rows (online softmax; m, l per row in fp32):
//   for each key tile j of BN keys (only tiles with an unmasked entry; the causal mask is applied per element only
//   on tiles that straddle the diagonal or the ragged end):
//     s = scale * q k_j^T;  m' = max(m, rowmax s);  p = exp(s - m');  l = l e^(m - m') + rowsum p;  o = o e^(m - m') + p v_j
//   o /= l;  lse = m + log l   (saved for backward with o)
// Backward (the probabilities are recomputed from q, k and lse, never stored):
//   prepare:  Dsum_i = sum_d dO_id o_id, paired with lse_i log2 e;  dq_order = 0, tickets = 0
//   main, per key block of BN keys of one kv head, over every query head of its group and every query block:
//     p = exp(scale q k^T - lse);  dp = dO v^T;  ds = p (dp - Dsum)
//     dv += p^T dO;  dk += ds^T q   (registers, summed over the group's query heads: no scratch, no atomics)
//     dq_accum += ds k              (fp32; see "Determinism")
//   and at the end dk = bf16(scale dk), dv = bf16(dv); the last key block of each query block writes
//   dq = bf16(scale dq_accum).
//
// Determinism. Each query block's dq gets one partial from every key block that sees it; they are added in key-block
// order 0, 1, 2, ... A counter per (batch, query head, query block) says how many partials are in; key block n waits
// until it reads n, adds its partial (the first stores it; later ones use atomicAdd, so the sum is formed in L2
// whatever an L1 holds; the last takes the old value back and writes dq), and after a barrier one thread fences and
// increments (a release; the waiter's volatile read and fence are the acquire). The waits only point at lower key
// blocks. Which key block a thread block works on is not its blockIdx.y but a ticket it takes with atomicAdd when it
// starts (one counter per batch and kv head): key block n goes to the n-th block of its chain to start, so every block
// it waits for has started before it and holds an SM or has finished, and the schedule cannot deadlock in whatever
// order the hardware starts blocks (CUDA promises none). The sums, and so the bits of dq, do not depend on that order.
// Blocks of one chain run nearly in lockstep, so the waits are short: only the first wave staggers.
//
// FLOPs (FlashAttention's convention): forward 4 S^2 D Hq B (2 GEMMs), halved with the causal mask; backward 2.5x
// forward (5 GEMMs: s, dp, dv, dk, dq; this kernel does exactly those). Exponentials: S^2 Hq B forward (halved when
// causal), the same backward.
// Bytes: forward reads q and writes o once (4 S Hq D B) plus lse, and reads k, v once per query block
// (4 S Hkv D B * S / BM, mostly from L2); backward reads o, dO and lse once (prepare, which writes the row statistics),
// k, v once and q, dO and the row statistics once per key block (mostly L2), writes dk, dv and dq once and moves
// dq_accum with atomics (4 S Hq D B * S / BN bytes through L2; causal masks halve the per-block rereads).
//
// Launch (tiles are -D specializations chosen by the launcher; smem rows are padded by 16 bytes, so the eight
// 16-byte rows an ldmatrix reads fall in distinct banks):
//   forward:  grid (ceil(S / BM), Hq, B), FWD_WARPS warps, each owning 16 * FWD_M_TILES query rows, BM = their sum;
//             key tiles of FWD_BLOCK_N double-buffered with cp.async; causal: the heaviest query blocks first.
//             Dynamic smem (BM + 4 BN) (D + 8) * 2 bytes.
//   prepare:  1-D, 256 threads, D/8 threads per row.
//   main:     grid (B * Hkv, ceil(S / BN)), BWD_WARPS warps, each owning 16 keys (BN = 16 BWD_WARPS); query tiles of
//             BWD_BLOCK_M rows (q, dO and the row statistics) double-buffered with cp.async. Dynamic smem
//             (2 BN + 4 BM) (D + 8) * 2 + BN (BM + 8) * 2 + 16 BM + 16 bytes (the last 16: the block's ticket).
//
// Hopper: this mma.sync kernel is the path on every architecture. A wgmma/TMA kernel for sm_90a is planned, not
// built; docs/roadmap/attention-sm90a.md says what it would do and what the project needs first.
#include "common.cuh"

#if !defined(HEAD_DIM) || !defined(CAUSAL) || !defined(FWD_WARPS) || !defined(FWD_M_TILES) || !defined(FWD_BLOCK_N) || \
    !defined(BWD_WARPS) || !defined(BWD_BLOCK_M)
#error "attention.cu is specialized by HEAD_DIM, CAUSAL, FWD_WARPS, FWD_M_TILES, FWD_BLOCK_N, BWD_WARPS and BWD_BLOCK_M"
#endif

#define FWD_THREADS (32 * FWD_WARPS)
#define BWD_THREADS (32 * BWD_WARPS)

namespace attention {

constexpr int D = HEAD_DIM;
constexpr int STRIDE = D + 8;  // smem row, in bf16: 16 bytes of padding shift consecutive rows by four banks
constexpr int CHUNKS = D / 8;  // 16-byte pieces per row
constexpr float LOG2E = 1.4426950408889634f;
constexpr float LN2 = 0.6931471805599453f;

constexpr int FWD_BM = 16 * FWD_M_TILES * FWD_WARPS;
constexpr int FWD_BN = FWD_BLOCK_N;

constexpr int BWD_BN = 16 * BWD_WARPS;
constexpr int BWD_BM = BWD_BLOCK_M;
constexpr int DS_STRIDE = BWD_BM + 8;
// Queries of one s / dp pass: 32 keeps 2 x 16 accumulators per thread beside dk and dv (2 D / 8 x 4 at D = 128).
constexpr int BWD_SLICE = BWD_BM < 32 ? BWD_BM : 32;
// dq of a query block: BM/16 row tiles times DQ_SPLIT column slices, one per warp.
constexpr int DQ_SPLIT = BWD_WARPS / (BWD_BM / 16);
constexpr int DQ_COLUMNS = D / DQ_SPLIT;

static_assert(D % 16 == 0 && D <= 256, "HEAD_DIM must be a multiple of 16");
static_assert(FWD_BN % 16 == 0 && BWD_BM % 16 == 0 && BWD_BM % BWD_SLICE == 0, "tiles are made of 16x16 mma blocks");
static_assert(FWD_M_TILES == 1 || FWD_M_TILES == 2, "a forward warp owns 16 or 32 query rows");
static_assert(DQ_SPLIT >= 1 && BWD_WARPS % (BWD_BM / 16) == 0 && D % (16 * DQ_SPLIT) == 0,
              "the dq tile must split evenly over the backward warps");

// ldmatrix .x4 lane addresses for a 16x16 block of a row-major smem tile. Order A: matrices (rows 0-7, cols 0-7),
// (8-15, 0-7), (0-7, 8-15), (8-15, 8-15): an A fragment of that block, or, with .trans on [k][n] storage, the B
// fragments of two n8 tiles. Order B: (0-7, 0-7), (0-7, 8-15), (8-15, 0-7), (8-15, 8-15): the B fragments of two
// n8 tiles from [n][k] storage, or, with .trans on [k][m] storage, an A fragment.
__device__ __forceinline__ int order_a_row(int lane) { return lane % 8 + 8 * (lane / 8 % 2); }
__device__ __forceinline__ int order_a_col(int lane) { return 8 * (lane / 16); }
__device__ __forceinline__ int order_b_row(int lane) { return lane % 8 + 8 * (lane / 16); }
__device__ __forceinline__ int order_b_col(int lane) { return 8 * (lane / 8 % 2); }

// Starts copying ROWS rows of D bf16 (row r at src + r * src_stride) into a padded smem tile; rows from
// valid_rows on are zero-filled without reading (their source address is src, always a real row).
template <int ROWS, int THREADS>
__device__ __forceinline__ void load_tile(bf16* tile, const bf16* src, i64 src_stride, int valid_rows) {
#pragma unroll
    for (int c = threadIdx.x; c < ROWS * CHUNKS; c += THREADS) {
        const int r = c / CHUNKS, col = c % CHUNKS * 8;
        const bool valid = r < valid_rows;
        cp_async_16(tile + r * STRIDE + col, valid ? src + r * src_stride + col : src, valid ? 16 : 0);
    }
}

// -inf without <math.h>'s INFINITY, which NVRTC does not provide.
__device__ __forceinline__ float minus_infinity() { return __int_as_float((int)0xff800000u); }

__device__ __forceinline__ void zero(float (&c)[4]) { c[0] = c[1] = c[2] = c[3] = 0.0f; }

__device__ __forceinline__ void mma(float (&c)[4], const u32 (&a)[4], u32 b0, u32 b1) {
    const u32 b[2] = {b0, b1};
    mma_bf16_16816(c, a, b, c);
}

// The A fragment (16 rows x 16 k) made of two adjacent n8 accumulator tiles: the FlashAttention-2 register reuse.
__device__ __forceinline__ void accumulators_to_a(u32 (&a)[4], const float (&lo)[4], const float (&hi)[4]) {
    a[0] = pack_bf16x2(lo[0], lo[1]);
    a[1] = pack_bf16x2(lo[2], lo[3]);
    a[2] = pack_bf16x2(hi[0], hi[1]);
    a[3] = pack_bf16x2(hi[2], hi[3]);
}

// Row statistics live in the four lanes of a quad (same g, t = 0..3).
__device__ __forceinline__ float quad_max(float x) {
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

}  // namespace attention

using namespace attention;

extern "C" __global__ void __launch_bounds__(FWD_THREADS)
keel_attention_forward(const bf16* __restrict__ q, const bf16* __restrict__ k, const bf16* __restrict__ v,
                       bf16* __restrict__ o, float* __restrict__ lse, int seq, int q_heads, int kv_heads, float scale_log2) {
    bf16* sQ = dynamic_smem<bf16>();          // [FWD_BM][STRIDE]; each warp reads only its own rows, and reuses them for o
    bf16* sK = sQ + FWD_BM * STRIDE;          // [2][FWD_BN][STRIDE]
    bf16* sV = sK + 2 * FWD_BN * STRIDE;      // [2][FWD_BN][STRIDE]

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    // Under the causal mask the last query blocks have the most key tiles: start them first.
    const int m_block = CAUSAL ? (int)(gridDim.x - 1 - blockIdx.x) : (int)blockIdx.x;
    const int h = blockIdx.y, b = blockIdx.z, kv = h / (q_heads / kv_heads);
    const int q0 = m_block * FWD_BM;
    const i64 q_stride = (i64)q_heads * D, kv_stride = (i64)kv_heads * D;
    const bf16* q_tile = q + ((i64)b * seq + q0) * q_stride + (i64)h * D;
    const bf16* k_head = k + (i64)b * seq * kv_stride + (i64)kv * D;
    const bf16* v_head = v + (i64)b * seq * kv_stride + (i64)kv * D;
    const int rows_end = min(q0 + FWD_BM, seq);
    const int tiles = CAUSAL ? (rows_end - 1) / FWD_BN + 1 : (seq + FWD_BN - 1) / FWD_BN;
    const int warp_row = warp * 16 * FWD_M_TILES;  // first row of this warp within the block

    load_tile<FWD_BM, FWD_THREADS>(sQ, q_tile, q_stride, seq - q0);
    load_tile<FWD_BN, FWD_THREADS>(sK, k_head, kv_stride, seq);
    load_tile<FWD_BN, FWD_THREADS>(sV, v_head, kv_stride, seq);
    cp_async_commit();

    float acc[FWD_M_TILES][D / 8][4];
    float row_max[FWD_M_TILES][2], row_sum[FWD_M_TILES][2];
#pragma unroll
    for (int mt = 0; mt < FWD_M_TILES; mt++) {
#pragma unroll
        for (int nt = 0; nt < D / 8; nt++) zero(acc[mt][nt]);
        row_max[mt][0] = row_max[mt][1] = minus_infinity();
        row_sum[mt][0] = row_sum[mt][1] = 0.0f;
    }

    for (int n = 0; n < tiles; n++) {
        const int stage = n & 1, k0 = n * FWD_BN;
        if (n + 1 < tiles) {
            const i64 next = (i64)(k0 + FWD_BN) * kv_stride;
            load_tile<FWD_BN, FWD_THREADS>(sK + (stage ^ 1) * FWD_BN * STRIDE, k_head + next, kv_stride, seq - k0 - FWD_BN);
            load_tile<FWD_BN, FWD_THREADS>(sV + (stage ^ 1) * FWD_BN * STRIDE, v_head + next, kv_stride, seq - k0 - FWD_BN);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const bf16* sKs = sK + stage * FWD_BN * STRIDE;
        const bf16* sVs = sV + stage * FWD_BN * STRIDE;

        // s = q k^T over this warp's rows and the tile's FWD_BN keys. q fragments are reread from smem every tile: held
        // in registers they would cost D/4 per row tile, which a 32-row warp at D = 128 cannot spare under 255.
        float s[FWD_M_TILES][FWD_BN / 8][4];
#pragma unroll
        for (int mt = 0; mt < FWD_M_TILES; mt++)
#pragma unroll
            for (int nt = 0; nt < FWD_BN / 8; nt++) zero(s[mt][nt]);
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            u32 a[FWD_M_TILES][4];
#pragma unroll
            for (int mt = 0; mt < FWD_M_TILES; mt++)
                ldmatrix_x4(a[mt], sQ + (warp_row + 16 * mt + order_a_row(lane)) * STRIDE + 16 * kk + order_a_col(lane));
#pragma unroll
            for (int np = 0; np < FWD_BN / 16; np++) {
                u32 kb[4];
                ldmatrix_x4(kb, sKs + (16 * np + order_b_row(lane)) * STRIDE + 16 * kk + order_b_col(lane));
#pragma unroll
                for (int mt = 0; mt < FWD_M_TILES; mt++) {
                    mma(s[mt][2 * np], a[mt], kb[0], kb[1]);
                    mma(s[mt][2 * np + 1], a[mt], kb[2], kb[3]);
                }
            }
        }

        // Online softmax. Element c of s[mt][nt] is row warp_row + 16 mt + g + 8 (c / 2), key k0 + 8 nt + 2 t + c % 2.
        const bool masked = k0 + FWD_BN > seq || (CAUSAL && k0 + FWD_BN - 1 > q0);
#pragma unroll
        for (int mt = 0; mt < FWD_M_TILES; mt++) {
#pragma unroll
            for (int r = 0; r < 2; r++) {
                const int row = q0 + warp_row + 16 * mt + g + 8 * r;
                float tile_max = minus_infinity();
#pragma unroll
                for (int nt = 0; nt < FWD_BN / 8; nt++) {
#pragma unroll
                    for (int c = 0; c < 2; c++) {
                        const int key = k0 + 8 * nt + 2 * t + c;
                        float x = s[mt][nt][2 * r + c] * scale_log2;
                        if (masked && (key >= seq || (CAUSAL && key > row))) x = minus_infinity();
                        s[mt][nt][2 * r + c] = x;
                        tile_max = fmaxf(tile_max, x);
                    }
                }
                const float new_max = fmaxf(row_max[mt][r], quad_max(tile_max));
                // A row with every key so far masked keeps max -inf; subtracting 0 then gives p = 0, not NaN.
                const float base = new_max == minus_infinity() ? 0.0f : new_max;
                const float rescale = exp2f(row_max[mt][r] - base);
                row_max[mt][r] = new_max;
                float sum = 0.0f;
#pragma unroll
                for (int nt = 0; nt < FWD_BN / 8; nt++) {
#pragma unroll
                    for (int c = 0; c < 2; c++) {
                        const float p = exp2f(s[mt][nt][2 * r + c] - base);
                        s[mt][nt][2 * r + c] = p;
                        sum += p;
                    }
                }
                row_sum[mt][r] = row_sum[mt][r] * rescale + sum;
#pragma unroll
                for (int dt = 0; dt < D / 8; dt++) {
                    acc[mt][dt][2 * r] *= rescale;
                    acc[mt][dt][2 * r + 1] *= rescale;
                }
            }
        }

        // o += p v: p goes from accumulators to A fragments in registers; v via ldmatrix.trans.
#pragma unroll
        for (int kk = 0; kk < FWD_BN / 16; kk++) {
            u32 pa[FWD_M_TILES][4];
#pragma unroll
            for (int mt = 0; mt < FWD_M_TILES; mt++) accumulators_to_a(pa[mt], s[mt][2 * kk], s[mt][2 * kk + 1]);
#pragma unroll
            for (int dp = 0; dp < D / 16; dp++) {
                u32 vb[4];
                ldmatrix_x4_trans(vb, sVs + (16 * kk + order_a_row(lane)) * STRIDE + 16 * dp + order_a_col(lane));
#pragma unroll
                for (int mt = 0; mt < FWD_M_TILES; mt++) {
                    mma(acc[mt][2 * dp], pa[mt], vb[0], vb[1]);
                    mma(acc[mt][2 * dp + 1], pa[mt], vb[2], vb[3]);
                }
            }
        }
        __syncthreads();  // every warp is done with this stage before the next iteration refills it
    }

    // o = acc / l and lse = (max + log2 l) ln 2, staged through this warp's own rows of sQ for 16-byte stores.
#pragma unroll
    for (int mt = 0; mt < FWD_M_TILES; mt++) {
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const float l = quad_sum(row_sum[mt][r]);
            const float inverse = l > 0.0f ? 1.0f / l : 0.0f;
            const int local = warp_row + 16 * mt + g + 8 * r, row = q0 + local;
            if (t == 0 && row < seq) lse[((i64)b * q_heads + h) * seq + row] = (row_max[mt][r] + log2f(l)) * LN2;
#pragma unroll
            for (int dt = 0; dt < D / 8; dt++)
                *reinterpret_cast<u32*>(sQ + local * STRIDE + 8 * dt + 2 * t) =
                    pack_bf16x2(acc[mt][dt][2 * r] * inverse, acc[mt][dt][2 * r + 1] * inverse);
        }
    }
    __syncwarp();
    bf16* o_tile = o + ((i64)b * seq + q0) * q_stride + (i64)h * D;
#pragma unroll
    for (int c = lane; c < 16 * FWD_M_TILES * CHUNKS; c += 32) {
        const int r = warp_row + c / CHUNKS, col = c % CHUNKS * 8;
        if (q0 + r < seq) store128(o_tile + r * q_stride + col, load128(sQ + r * STRIDE + col));
    }
}

// stats[b, h, i] = (lse_i log2 e, Dsum_i = dO_i . o_i) in fp32, rows of S2 = S rounded up to even pairs, and the
// zeroing of dq_order (the counters [B, Hq, ceil(S / BM)] and then the key-block tickets [B, Hkv]; order_count in all).
// D/8 threads per (b, i, h) row, 8 elements each; rows = B S Hq.
extern "C" __global__ void keel_attention_backward_prepare(const bf16* __restrict__ o, const bf16* __restrict__ dout,
                                                           const float* __restrict__ lse, float2* __restrict__ stats,
                                                           int* __restrict__ dq_order, i64 rows, int seq, int q_heads,
                                                           int order_count) {
    const i64 id = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    const i64 row = id / CHUNKS;
    const int chunk = (int)(id % CHUNKS);
    float dot = 0.0f;
    if (row < rows) {
        const Packed128<bf16> x = load128(o + row * D + 8 * chunk), y = load128(dout + row * D + 8 * chunk);
#pragma unroll
        for (int j = 0; j < 8; j++) dot += bf16_to_float(x.v[j]) * bf16_to_float(y.v[j]);
    }
    // The D/8 lanes of a row are aligned groups within the warp (D/8 divides 32), so xor offsets below D/8 stay inside.
#pragma unroll
    for (int offset = CHUNKS / 2; offset > 0; offset >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, offset);
    if (row < rows && chunk == 0) {
        const i64 h = row % q_heads, bi = row / q_heads, i = bi % seq, b = bi / seq;
        const i64 bh = b * q_heads + h;
        stats[bh * (seq + (seq & 1)) + i] = make_float2(lse[bh * seq + i] * LOG2E, dot);
    }
    if (id < order_count) dq_order[id] = 0;
}

extern "C" __global__ void __launch_bounds__(BWD_THREADS)
keel_attention_backward(const bf16* __restrict__ q, const bf16* __restrict__ k, const bf16* __restrict__ v,
                        const bf16* __restrict__ dout, const float2* __restrict__ stats, float* __restrict__ dq_accum,
                        int* __restrict__ dq_order, bf16* __restrict__ dq_out,
                        bf16* __restrict__ dk, bf16* __restrict__ dv, int seq, int q_heads, int kv_heads, float scale,
                        float scale_log2) {
    bf16* sK = dynamic_smem<bf16>();             // [BWD_BN][STRIDE]
    bf16* sV = sK + BWD_BN * STRIDE;             // [BWD_BN][STRIDE]
    bf16* sQ = sV + BWD_BN * STRIDE;             // [2][BWD_BM][STRIDE]
    bf16* sdO = sQ + 2 * BWD_BM * STRIDE;        // [2][BWD_BM][STRIDE]
    bf16* sdS = sdO + 2 * BWD_BM * STRIDE;       // [BWD_BN][DS_STRIDE]: ds^T, keys by queries
    float2* sLD = reinterpret_cast<float2*>(sdS + BWD_BN * DS_STRIDE);  // [2][BWD_BM]: (lse log2 e, Dsum)
    int* sTicket = reinterpret_cast<int*>(sLD + 2 * BWD_BM);              // [4]: the key block, in [0]

    const int q_blocks = (seq + BWD_BM - 1) / BWD_BM;
    // The key block is the order of arrival in this (batch, kv head) chain, not blockIdx.y (see Determinism).
    if (threadIdx.x == 0) {
        int* tickets = dq_order + (i64)(gridDim.x / kv_heads) * q_heads * q_blocks;
        *sTicket = atomicAdd(tickets + blockIdx.x, 1);
    }
    __syncthreads();
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int b = blockIdx.x / kv_heads, kv = blockIdx.x % kv_heads, n_block = *sTicket;
    const int group = q_heads / kv_heads, k0 = n_block * BWD_BN;
    // Under the causal mask, query blocks that end before this key block's first key see none of it.
    const int m_first = CAUSAL ? k0 / BWD_BM : 0;
    const int m_count = q_blocks - m_first, steps = group * m_count;
    const i64 q_stride = (i64)q_heads * D, kv_stride = (i64)kv_heads * D;
    const i64 kv_offset = ((i64)b * seq + k0) * kv_stride + (i64)kv * D;

    // Queues the q and dO tiles of step `step` and its row statistics into `stage`, all by cp.async (two rows' pairs per
    // 16 bytes; rows past the end are zero-filled without a read).
    auto load_step = [&](int step, int stage) {
        const int h = kv * group + step / m_count, q0 = (m_first + step % m_count) * BWD_BM;
        const i64 offset = ((i64)b * seq + q0) * q_stride + (i64)h * D;
        load_tile<BWD_BM, BWD_THREADS>(sQ + stage * BWD_BM * STRIDE, q + offset, q_stride, seq - q0);
        load_tile<BWD_BM, BWD_THREADS>(sdO + stage * BWD_BM * STRIDE, dout + offset, q_stride, seq - q0);
        static_assert(BWD_BM / 2 <= BWD_THREADS, "one thread per two rows of statistics");
        if (threadIdx.x < BWD_BM / 2) {
            const int r = 2 * threadIdx.x, valid = min(max(seq - q0 - r, 0), 2);
            const float2* rows = stats + ((i64)b * q_heads + h) * (seq + (seq & 1)) + q0;
            cp_async_16(sLD + stage * BWD_BM + r, rows + (valid > 0 ? r : 0), 8 * valid);
        }
    };

    load_tile<BWD_BN, BWD_THREADS>(sK, k + kv_offset, kv_stride, seq - k0);
    load_tile<BWD_BN, BWD_THREADS>(sV, v + kv_offset, kv_stride, seq - k0);
    load_step(0, 0);
    cp_async_commit();

    float dk_acc[D / 8][4], dv_acc[D / 8][4];
#pragma unroll
    for (int dt = 0; dt < D / 8; dt++) {
        zero(dk_acc[dt]);
        zero(dv_acc[dt]);
    }
    const int key_row = warp * 16;  // this warp's 16 keys within the block

    for (int step = 0; step < steps; step++) {
        const int stage = step & 1;
        const int h = kv * group + step / m_count, m_block = m_first + step % m_count, q0 = m_block * BWD_BM;
        if (step + 1 < steps) {
            load_step(step + 1, stage ^ 1);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const bf16* sQs = sQ + stage * BWD_BM * STRIDE;
        const bf16* sdOs = sdO + stage * BWD_BM * STRIDE;
        const float2* sLDs = sLD + stage * BWD_BM;

        // Per slice of BWD_SLICE queries (slicing halves the live accumulators next to dk and dv):
        // s^T = k q^T and dp^T = v dO^T for this warp's 16 keys, then p^T and ds^T, then dv += p^T dO, dk += ds^T q.
        const bool masked = k0 + BWD_BN > seq || q0 + BWD_BM > seq || (CAUSAL && k0 + BWD_BN - 1 > q0);
#pragma unroll 1
        for (int slice = 0; slice < BWD_BM / BWD_SLICE; slice++) {
            const int s0 = slice * BWD_SLICE;
            float s[BWD_SLICE / 8][4], dp[BWD_SLICE / 8][4];
#pragma unroll
            for (int nt = 0; nt < BWD_SLICE / 8; nt++) {
                zero(s[nt]);
                zero(dp[nt]);
            }
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                u32 ka[4], va[4];
                ldmatrix_x4(ka, sK + (key_row + order_a_row(lane)) * STRIDE + 16 * kk + order_a_col(lane));
                ldmatrix_x4(va, sV + (key_row + order_a_row(lane)) * STRIDE + 16 * kk + order_a_col(lane));
#pragma unroll
                for (int np = 0; np < BWD_SLICE / 16; np++) {
                    u32 qb[4], ob[4];
                    const int row = s0 + 16 * np + order_b_row(lane);
                    ldmatrix_x4(qb, sQs + row * STRIDE + 16 * kk + order_b_col(lane));
                    ldmatrix_x4(ob, sdOs + row * STRIDE + 16 * kk + order_b_col(lane));
                    mma(s[2 * np], ka, qb[0], qb[1]);
                    mma(s[2 * np + 1], ka, qb[2], qb[3]);
                    mma(dp[2 * np], va, ob[0], ob[1]);
                    mma(dp[2 * np + 1], va, ob[2], ob[3]);
                }
            }

            // p^T = exp2(s scale log2 e - lse log2 e), ds^T = p^T (dp^T - Dsum). Element c of tile nt: key
            // k0 + key_row + g + 8 (c / 2), query q0 + s0 + 8 nt + 2 t + c % 2.
#pragma unroll
            for (int nt = 0; nt < BWD_SLICE / 8; nt++) {
#pragma unroll
                for (int c = 0; c < 4; c++) {
                    const int key = k0 + key_row + g + 8 * (c / 2), qi = s0 + 8 * nt + 2 * t + c % 2, query = q0 + qi;
                    const float2 ld = sLDs[qi];
                    float p = exp2f(s[nt][c] * scale_log2 - ld.x);
                    if (masked && (key >= seq || query >= seq || (CAUSAL && key > query))) p = 0.0f;
                    s[nt][c] = p;
                    dp[nt][c] = p * (dp[nt][c] - ld.y);
                }
            }

            // dv += p^T dO and dk += ds^T q, both A operands straight from the accumulators; ds^T also to smem for dq.
#pragma unroll
            for (int kq = 0; kq < BWD_SLICE / 16; kq++) {
                u32 pa[4], dsa[4];
                accumulators_to_a(pa, s[2 * kq], s[2 * kq + 1]);
                accumulators_to_a(dsa, dp[2 * kq], dp[2 * kq + 1]);
                // dsa holds keys g and g + 8 of queries s0 + 16 kq + 2t.. and s0 + 16 kq + 8 + 2t..; ds^T rows are keys.
                bf16* ds_row = sdS + (key_row + g) * DS_STRIDE + s0 + 16 * kq + 2 * t;
                *reinterpret_cast<u32*>(ds_row) = dsa[0];
                *reinterpret_cast<u32*>(ds_row + 8 * DS_STRIDE) = dsa[1];
                *reinterpret_cast<u32*>(ds_row + 8) = dsa[2];
                *reinterpret_cast<u32*>(ds_row + 8 * DS_STRIDE + 8) = dsa[3];
                const int row = s0 + 16 * kq + order_a_row(lane);
#pragma unroll
                for (int dp2 = 0; dp2 < D / 16; dp2++) {
                    u32 ob[4], qb[4];
                    ldmatrix_x4_trans(ob, sdOs + row * STRIDE + 16 * dp2 + order_a_col(lane));
                    ldmatrix_x4_trans(qb, sQs + row * STRIDE + 16 * dp2 + order_a_col(lane));
                    mma(dv_acc[2 * dp2], pa, ob[0], ob[1]);
                    mma(dv_acc[2 * dp2 + 1], pa, ob[2], ob[3]);
                    mma(dk_acc[2 * dp2], dsa, qb[0], qb[1]);
                    mma(dk_acc[2 * dp2 + 1], dsa, qb[2], qb[3]);
                }
            }
        }
        __syncthreads();  // ds^T complete

        // This block's dq partial for the query block: warp -> 16 queries x DQ_COLUMNS columns, ds (via .trans) times k.
        const int dq_rows = warp % (BWD_BM / 16) * 16, dq_col0 = warp / (BWD_BM / 16) * DQ_COLUMNS;
        float dq[DQ_COLUMNS / 8][4];
#pragma unroll
        for (int nt = 0; nt < DQ_COLUMNS / 8; nt++) zero(dq[nt]);
#pragma unroll
        for (int kk = 0; kk < BWD_BN / 16; kk++) {
            u32 dsa[4];
            ldmatrix_x4_trans(dsa, sdS + (16 * kk + order_b_row(lane)) * DS_STRIDE + dq_rows + order_b_col(lane));
#pragma unroll
            for (int dp2 = 0; dp2 < DQ_COLUMNS / 16; dp2++) {
                u32 kb[4];
                ldmatrix_x4_trans(kb, sK + (16 * kk + order_a_row(lane)) * STRIDE + dq_col0 + 16 * dp2 + order_a_col(lane));
                mma(dq[2 * dp2], dsa, kb[0], kb[1]);
                mma(dq[2 * dp2 + 1], dsa, kb[2], kb[3]);
            }
        }

        // Add the partial in key-block order (see Determinism in the header). The first key block stores instead of
        // adding, so dq_accum needs no clearing; the last adds with atomicAdd's returned old value and writes the
        // finished row of dq in bf16 itself, so no pass over dq_accum follows.
        const bool first = n_block == 0;
        const bool last = n_block == (CAUSAL ? (min(q0 + BWD_BM, seq) - 1) / BWD_BN : (int)gridDim.y - 1);
        int* order = dq_order + ((i64)b * q_heads + h) * q_blocks + m_block;
        if (!first && threadIdx.x == 0) {
            while (*reinterpret_cast<volatile int*>(order) != n_block) {
            }
            __threadfence();
        }
        __syncthreads();
#pragma unroll
        for (int nt = 0; nt < DQ_COLUMNS / 8; nt++) {
#pragma unroll
            for (int r = 0; r < 2; r++) {
                const int query = q0 + dq_rows + g + 8 * r;
                if (query < seq) {
                    const i64 at = ((i64)b * seq + query) * q_stride + (i64)h * D + dq_col0 + 8 * nt + 2 * t;
                    float x0 = dq[nt][2 * r], x1 = dq[nt][2 * r + 1];
                    if (first && !last) {
                        *reinterpret_cast<float2*>(dq_accum + at) = make_float2(x0, x1);
                    } else if (!first && !last) {
                        atomicAdd(dq_accum + at, x0);
                        atomicAdd(dq_accum + at + 1, x1);
                    } else {
                        if (!first) {
                            x0 += atomicAdd(dq_accum + at, x0);
                            x1 += atomicAdd(dq_accum + at + 1, x1);
                        }
                        *reinterpret_cast<u32*>(dq_out + at) = pack_bf16x2(x0 * scale, x1 * scale);
                    }
                }
            }
        }
        // Publish: the barrier orders every thread's partial before thread 0's fence, and that fence (cumulative, at
        // GPU scope) orders them before the increment, as cooperative groups' grid barrier does. A waiter reads the
        // counter, fences, then meets its block at a barrier before anyone adds.
        __syncthreads();  // also: every warp is done with this stage and with sdS before the next step refills them
        if (!last && threadIdx.x == 0) {
            __threadfence();
            atomicAdd(order, 1);
        }
    }

    // dk = scale * sum ds^T q, dv = sum p^T dO, over every query head of the group.
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int key = k0 + key_row + g + 8 * r;
        if (key < seq) {
            const i64 at = ((i64)b * seq + key) * kv_stride + (i64)kv * D + 2 * t;
#pragma unroll
            for (int dt = 0; dt < D / 8; dt++) {
                *reinterpret_cast<u32*>(dk + at + 8 * dt) = pack_bf16x2(dk_acc[dt][2 * r] * scale, dk_acc[dt][2 * r + 1] * scale);
                *reinterpret_cast<u32*>(dv + at + 8 * dt) = pack_bf16x2(dv_acc[dt][2 * r], dv_acc[dt][2 * r + 1]);
            }
        }
    }
}
