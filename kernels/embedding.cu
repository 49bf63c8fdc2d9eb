// embedding.cu — token embedding: gather rows of the table forward, add them back deterministically backward.
//
// Forward, tokens [T] int32, table [vocab, dim] fp32 or bf16, out [T, dim] fp32 (the residual stream x0):
//   keel_embedding_forward_f32 / _bf16:  out[t, :] = table[tokens[t], :]
//   Bytes: T dim (s + 4) with s = 2 or 4 bytes per table element, plus 4 T for the ids. No FLOPs.
//   Launch: 1-D blocks of 256 threads, grid-stride over T dim / V vectors (V = 16 / s elements: one 16-byte
//   table load, one or two 16-byte stores); dim is a multiple of V, the pointers 16-byte aligned.
//
// Backward, dOut [T, dim] fp32, dTable [vocab, dim] fp32, accumulated:
//   dTable[tok, :] += sum over t with tokens[t] = tok of dOut[t, :], summed in fp32 in an order that
//   depends only on the tokens: deterministic, and without float atomics (docs/kernels.md).
//   1. Sort. Keys (token << 32 | position) are sorted ascending by a bitonic network over n = 2^m >= T keys
//      (padding keys are all ones): keel_embedding_sort_keys builds the keys of a 4096-key chunk and sorts it
//      in shared memory; each later merge size k > 4096 runs its strides >= 4096 as global passes
//      (keel_embedding_sort_merge, one per stride) and the rest in shared memory (keel_embedding_sort_merge_chunk).
//      Keys are unique, so the result is the same on every run and every GPU; equal tokens end up adjacent,
//      in position order. Cost: O(n log^2 n) compares on 8-byte keys, 1 + sum over merge sizes of
//      (log2(k / 4096) + 1) launches (T = 16k: 6 launches moving 16 n bytes each, about 1.5 MB in all) —
//      small next to the 4 T dim bytes of dOut for any dim of a real model.
//   2. Accumulate. keel_embedding_backward_tiles: block (b, y) takes sorted keys [64 b, 64 b + 64) and a
//      slice of 4 * blockDim.x columns; each thread sums its 4 columns along the tile in key order and, at the
//      end of each run of equal tokens, either adds the run into dTable (a run that lies inside the tile: no
//      other block touches that row) or, for a run crossing the tile's edge, stores it as the tile's partial
//      (slot 0: the first run, continuing from the tile before; slot 1: the last run, continuing into the next).
//      keel_embedding_backward_spans: the tile where a crossing run starts adds its slot 1 and the following
//      tiles' slot 0 in tile order into dTable. So every row of dTable is written exactly once, by one thread
//      per column, and the work per block is bounded by the tile (a token repeated T times costs no more
//      than T distinct ones).
//   Bytes: 4 T dim (dOut) + 8 U dim (dTable rows read and written, U distinct tokens) + 8 T (keys) plus at
//   most 2 partial rows per tile written and read (<= 2 / 64 of dOut, only where runs cross tiles).
//   Launch: sort 1024-thread blocks (32 KiB static shared memory); merges 256 threads, grid-stride; tiles and
//   spans grid (ceil(T / 64), ceil(dim / (4 threads))), threads = min(128, dim / 4 rounded up to 32).
//
// Token ids are validated on the device: an id outside [0, vocab) is never used as an address. The forward
// writes NaN into that output row, the backward sorts it past every valid key and skips it; both count it
// in errors[0] and keep the smallest (position << 32 | id) in errors[2..3], complemented (an atomicMax of the
// complement), so that a zeroed word means "no error" and the device can clear it with a memset; the
// device reads the word back when it synchronizes and reports it.
#include "common.cuh"

static constexpr u32 INVALID_TOKEN = 0xffffffffu;
static constexpr int SORT_CHUNK = 4096;   // keys sorted per block in shared memory (32 KiB)
static constexpr int SORT_THREADS = 1024;
static constexpr int TILE = 64;           // sorted keys per accumulation block
static constexpr int UNROLL = 8;          // rows of dOut loaded ahead of the in-order sum

__device__ __forceinline__ void report_bad_token(u32* errors, i64 position, int id) {
    atomicAdd(errors, 1u);
    atomicMax(reinterpret_cast<u64*>(errors + 2), ~(((u64)position << 32) | (u32)id));
}

// ----------------------------------------------------------------------------------------------------------
// Forward

template <class T>
__device__ __forceinline__ void embedding_forward(const int* __restrict__ tokens, const T* __restrict__ table,
                                                  float* __restrict__ out, i64 count, int vocab, int dim, u32* errors) {
    constexpr int VEC = Packed128<T>::size;
    const int row_vectors = dim / VEC;
    const i64 vectors = count * row_vectors;
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < vectors; i += stride) {
        const i64 t = i / row_vectors;
        const int column = (int)(i - t * row_vectors) * VEC;
        const int token = tokens[t];
        float* o = out + t * dim + column;
        Packed128<float> f[VEC / 4];
        if ((unsigned)token < (unsigned)vocab) {
            const Packed128<T> row = load128(table + (i64)token * dim + column);
            for (int j = 0; j < VEC; j++) f[j / 4].v[j % 4] = to_float(row.v[j]);
        } else {
            if (column == 0) report_bad_token(errors, t, token);
            for (int j = 0; j < VEC; j++) f[j / 4].v[j % 4] = __int_as_float(0x7fffffff);
        }
        for (int j = 0; j < VEC / 4; j++) store128(o + 4 * j, f[j]);
    }
}

extern "C" __global__ void keel_embedding_forward_f32(const int* __restrict__ tokens, const float* __restrict__ table,
                                                      float* __restrict__ out, i64 count, int vocab, int dim, u32* errors) {
    embedding_forward(tokens, table, out, count, vocab, dim, errors);
}

extern "C" __global__ void keel_embedding_forward_bf16(const int* __restrict__ tokens, const bf16* __restrict__ table,
                                                       float* __restrict__ out, i64 count, int vocab, int dim, u32* errors) {
    embedding_forward(tokens, table, out, count, vocab, dim, errors);
}

// ----------------------------------------------------------------------------------------------------------
// Backward, step 1: the bitonic sort. Element i of stage (k, j) is compared with i + j when bit j of i is
// clear, into ascending order when bit k of i is clear and descending otherwise; j halves from k / 2 to 1,
// k doubles from 2 to n. Pair p of a stage has its lower element at p with a zero bit inserted at bit j.

__device__ __forceinline__ i64 pair_low(i64 p, int log_j) {
    return ((p >> log_j) << (log_j + 1)) | (p & ((1ll << log_j) - 1));
}

__device__ __forceinline__ void compare_exchange(u64& a, u64& b, bool ascending) {
    if ((a > b) == ascending) {
        const u64 t = a;
        a = b;
        b = t;
    }
}

// Stages (k, j) for j from min(k, chunk) / 2 down to 1, on the chunk in shared memory that starts at global
// index base (the direction depends on the global index). Barriers before and after.
__device__ __forceinline__ void sort_chunk_stages(u64* s, int chunk, i64 base, i64 k) {
    int log_j = 0;
    while ((2ll << log_j) < min(k, (i64)chunk)) log_j++;
    for (; log_j >= 0; log_j--) {
        __syncthreads();
        for (int p = threadIdx.x; p < chunk / 2; p += blockDim.x) {
            const int lo = (int)pair_low(p, log_j), hi = lo + (1 << log_j);
            compare_exchange(s[lo], s[hi], ((base + lo) & k) == 0);
        }
    }
    __syncthreads();
}

extern "C" __global__ void __launch_bounds__(SORT_THREADS)
keel_embedding_sort_keys(const int* __restrict__ tokens, i64 count, int vocab, u64* __restrict__ keys, i64 n, u32* errors) {
    __shared__ u64 s[SORT_CHUNK];
    const int chunk = (int)min(n, (i64)SORT_CHUNK);
    const i64 base = (i64)blockIdx.x * chunk;
    for (int l = threadIdx.x; l < chunk; l += blockDim.x) {
        const i64 p = base + l;
        u64 key = ~0ull;
        if (p < count) {
            const int token = tokens[p];
            u32 t = (u32)token;
            if ((unsigned)token >= (unsigned)vocab) {
                report_bad_token(errors, p, token);
                t = INVALID_TOKEN;
            }
            key = ((u64)t << 32) | (u64)p;
        }
        s[l] = key;
    }
    for (i64 k = 2; k <= chunk; k *= 2) sort_chunk_stages(s, chunk, base, k);
    for (int l = threadIdx.x; l < chunk; l += blockDim.x) keys[base + l] = s[l];
}

extern "C" __global__ void keel_embedding_sort_merge(u64* __restrict__ keys, i64 n, i64 k, int log_j) {
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 p = (i64)blockIdx.x * blockDim.x + threadIdx.x; p < n / 2; p += stride) {
        const i64 lo = pair_low(p, log_j), hi = lo + (1ll << log_j);
        u64 a = keys[lo], b = keys[hi];
        compare_exchange(a, b, (lo & k) == 0);
        keys[lo] = a;
        keys[hi] = b;
    }
}

extern "C" __global__ void __launch_bounds__(SORT_THREADS) keel_embedding_sort_merge_chunk(u64* __restrict__ keys, i64 n, i64 k) {
    __shared__ u64 s[SORT_CHUNK];
    const i64 base = (i64)blockIdx.x * SORT_CHUNK;
    for (int l = threadIdx.x; l < SORT_CHUNK; l += blockDim.x) s[l] = keys[base + l];
    sort_chunk_stages(s, SORT_CHUNK, base, k);
    for (int l = threadIdx.x; l < SORT_CHUNK; l += blockDim.x) keys[base + l] = s[l];
}

// ----------------------------------------------------------------------------------------------------------
// Backward, step 2: sums along the sorted keys. partials: [tiles][2][dim].

__device__ __forceinline__ void add4(Packed128<float>& a, const Packed128<float>& b) {
    for (int j = 0; j < 4; j++) a.v[j] += b.v[j];
}

__device__ __forceinline__ void add_into(float* p, const Packed128<float>& x) {
    Packed128<float> v = load128(p);
    add4(v, x);
    store128(p, v);
}

extern "C" __global__ void keel_embedding_backward_tiles(const u64* __restrict__ keys, i64 count, const float* __restrict__ d_out,
                                                         float* __restrict__ d_table, float* __restrict__ partials, int dim) {
    __shared__ u32 token_of[TILE + 1];  // [TILE]: the first token of the next tile
    __shared__ u32 position_of[TILE];
    __shared__ u32 previous_token;      // the last token of the tile before
    const i64 start = (i64)blockIdx.x * TILE;
    for (int l = threadIdx.x; l <= TILE; l += blockDim.x) {
        const u64 key = start + l < count ? keys[start + l] : ~0ull;
        token_of[l] = (u32)(key >> 32);
        if (l < TILE) position_of[l] = (u32)key;
    }
    if (threadIdx.x == 0) previous_token = start > 0 ? (u32)(keys[start - 1] >> 32) : INVALID_TOKEN;
    __syncthreads();
    const int column = 4 * (blockIdx.y * blockDim.x + threadIdx.x);
    if (column >= dim) return;

    Packed128<float> sum = {};
    int run_start = 0;
    for (int i0 = 0; i0 < TILE; i0 += UNROLL) {
        Packed128<float> rows[UNROLL];
        for (int u = 0; u < UNROLL; u++) {
            rows[u] = {};
            if (token_of[i0 + u] != INVALID_TOKEN) rows[u] = load128(d_out + (i64)position_of[i0 + u] * dim + column);
        }
        for (int u = 0; u < UNROLL; u++) {
            const int i = i0 + u;
            const u32 token = token_of[i];
            if (token == INVALID_TOKEN) return;  // sorted: only invalid and padding keys follow
            add4(sum, rows[u]);
            if (i + 1 < TILE && token_of[i + 1] == token) continue;
            if (run_start == 0 && token == previous_token)
                store128(partials + ((i64)blockIdx.x * 2 + 0) * dim + column, sum);
            else if (i + 1 == TILE && token_of[TILE] == token)
                store128(partials + ((i64)blockIdx.x * 2 + 1) * dim + column, sum);
            else
                add_into(d_table + (i64)token * dim + column, sum);
            sum = {};
            run_start = i + 1;
        }
    }
}

extern "C" __global__ void keel_embedding_backward_spans(const u64* __restrict__ keys, i64 count, const float* __restrict__ partials,
                                                         float* __restrict__ d_table, int dim) {
    const i64 tile = blockIdx.x, start = tile * TILE, end = min(start + TILE, count);
    const u32 token = (u32)(keys[end - 1] >> 32);
    if (token == INVALID_TOKEN || end >= count || (u32)(keys[end] >> 32) != token) return;  // the last run ends here
    if (start > 0 && (u32)(keys[start] >> 32) == token && (u32)(keys[start - 1] >> 32) == token) return;  // it started earlier
    const int column = 4 * (blockIdx.y * blockDim.x + threadIdx.x);
    if (column >= dim) return;
    Packed128<float> sum = load128(partials + (tile * 2 + 1) * dim + column);
    for (i64 t = tile + 1;; t++) {
        add4(sum, load128(partials + (t * 2 + 0) * dim + column));
        const i64 next = (t + 1) * TILE;
        if (next >= count || (u32)(keys[next] >> 32) != token) break;
    }
    add_into(d_table + (i64)token * dim + column, sum);
}
