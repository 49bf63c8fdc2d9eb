// cross_entropy.cu — fused softmax cross-entropy over the LM head's logits, with its gradient.
//
//   keel_cross_entropy_fused: for row t of logits [T, stride] fp32, whose first V columns are the vocabulary and whose
//   columns V..stride-1 are padding (the LM head has V rounded up to a multiple of 64 rows, so its GEMM's leading
//   dimension stays aligned), with target y = targets[t]:
//     m = max_{j<V} x_j,  s = sum_{j<V} exp(x_j - m),  lse = m + log(s)
//     losses[t] = lse - x_y
//     d_logits[t, j] = (exp(x_j - lse) - [j = y]) * loss_scale   for j < V            (when d_logits is not null)
//     d_logits[t, j] = 0                                          for V <= j < stride
//   The padded columns never enter the softmax; their gradient is written as zero, so the head's padded rows get
//   none and stay zero under AdamW. y = -1 ignores the row: loss 0 and a zero gradient row (padding included). Any
//   other y outside [0, V) (a padded column included) is never used as an address: the loss and the gradient's V
//   columns are NaN (the launcher cannot see the targets without waiting).
//   d_logits may be logits itself: each element is read and then written by the same thread in pass 2, after the
//   block reduction's barrier, and x_y is read before it; the padded columns are read by no thread.
//
// Two passes per row: pass 1 reads the row's V columns once, each thread keeping an online (max, sum) pair — rescaling
// its sum when its maximum grows — merged across the block by shuffles and shared memory; pass 2 reads them again and
// writes the gradient (the second read mostly hits L2: a 50257-wide row is 196 KiB), then zeros the padding with
// scalar stores (fewer than 64 columns a row in the model, so not worth vectors).
// Bytes per row: 4V read (losses only) or 8V read + 4·stride written (with the gradient); FLOPs about 3V plus V
// exponentials per pass: bandwidth bound.
// Launch: one block per row (grid T), blockDim = clamp(ceil(V / 16) rounded up to 32, 32, 1024), so a thread
// sees about 16 elements or more. A row starts at a 16-byte boundary when stride is a multiple of 4 (the model's
// is a multiple of 64); for any other stride each row is split into a scalar head up to the first 16-byte boundary,
// 16-byte vectors, and a scalar tail. logits and d_logits are 16-byte aligned (checked by the launcher) and share
// the stride, so both split a row alike.
#include "common.cuh"

__device__ __forceinline__ float negative_infinity() { return __int_as_float((int)0xff800000u); }

// Folds (m2, s2) into (m, s): the sum of exp(x - max) over the union of both sets.
__device__ __forceinline__ void merge(float& m, float& s, float m2, float s2) {
    const float top = fmaxf(m, m2);
    if (top == negative_infinity()) return;  // both empty (or all -inf): exp(-inf - -inf) would be NaN
    s = s * expf(m - top) + s2 * expf(m2 - top);
    m = top;
}

__device__ __forceinline__ void absorb(float& m, float& s, float x) {
    if (x > m) {
        s *= expf(m - x);
        m = x;
    }
    if (m != negative_infinity()) s += expf(x - m);  // NaN x: the comparison is false, the sum turns NaN
}

__device__ __forceinline__ void absorb(float& m, float& s, const Packed128<float>& x) {
    const float top = fmaxf(fmaxf(x.v[0], x.v[1]), fmaxf(x.v[2], x.v[3]));
    if (top > m) {
        s *= expf(m - top);
        m = top;
    }
    if (m != negative_infinity()) s += expf(x.v[0] - m) + expf(x.v[1] - m) + expf(x.v[2] - m) + expf(x.v[3] - m);
}

// (m, s) over the whole block, returned to every thread.
__device__ __forceinline__ void block_max_sum(float& m, float& s) {
    __shared__ float maxima[32], sums[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    for (int offset = 16; offset > 0; offset >>= 1)
        merge(m, s, __shfl_xor_sync(0xffffffffu, m, offset), __shfl_xor_sync(0xffffffffu, s, offset));
    if (lane == 0) {
        maxima[warp] = m;
        sums[warp] = s;
    }
    __syncthreads();
    m = lane < warps ? maxima[lane] : negative_infinity();
    s = lane < warps ? sums[lane] : 0.0f;
    for (int offset = 16; offset > 0; offset >>= 1)
        merge(m, s, __shfl_xor_sync(0xffffffffu, m, offset), __shfl_xor_sync(0xffffffffu, s, offset));
}

__device__ __forceinline__ float gradient(float x, float lse, bool is_target, float scale) {
    return (expf(x - lse) - (is_target ? 1.0f : 0.0f)) * scale;
}

extern "C" __global__ void __launch_bounds__(1024)
keel_cross_entropy_fused(const float* logits, const int* __restrict__ targets, float* __restrict__ losses, float* d_logits,
                   int vocab, int stride, float loss_scale) {
    const i64 row = blockIdx.x;
    const float* x = logits + row * stride;
    float* d = d_logits != nullptr ? d_logits + row * stride : nullptr;
    const int target = targets[row];
    const int threads = blockDim.x;
    // Row split: scalar head to the first 16-byte boundary, vectors, scalar tail.
    const int head = (int)min((u64)vocab, ((16 - ((u64)x & 15)) & 15) / 4);
    const int vectors = (vocab - head) / 4, tail = head + 4 * vectors;

    if (target == -1) {
        if (threadIdx.x == 0) losses[row] = 0.0f;
        if (d == nullptr) return;
        const Packed128<float> zero = {};
        for (int i = threadIdx.x; i < head; i += threads) d[i] = 0.0f;
        for (int i = threadIdx.x; i < vectors; i += threads) store128(d + head + 4 * i, zero);
        for (int i = tail + threadIdx.x; i < stride; i += threads) d[i] = 0.0f;  // the tail and the padding
        return;
    }
    const bool valid = (unsigned)target < (unsigned)vocab;
    const float nan = __int_as_float(0x7fffffff);
    const float target_logit = valid ? x[target] : nan;  // read before any thread may overwrite it

    float m = negative_infinity(), s = 0.0f;
    for (int i = threadIdx.x; i < head; i += threads) absorb(m, s, x[i]);
    int i = threadIdx.x;
    for (; i + 3 * threads < vectors; i += 4 * threads) {  // four loads in flight before the dependent sums
        const Packed128<float> a = load128(x + head + 4 * i), b = load128(x + head + 4 * (i + threads)),
                               c = load128(x + head + 4 * (i + 2 * threads)), e = load128(x + head + 4 * (i + 3 * threads));
        absorb(m, s, a);
        absorb(m, s, b);
        absorb(m, s, c);
        absorb(m, s, e);
    }
    for (; i < vectors; i += threads) absorb(m, s, load128(x + head + 4 * i));
    for (int j = tail + threadIdx.x; j < vocab; j += threads) absorb(m, s, x[j]);
    block_max_sum(m, s);
    const float lse = m + logf(s);
    if (threadIdx.x == 0) losses[row] = valid ? lse - target_logit : nan;
    if (d == nullptr) return;

    const float scale = valid ? loss_scale : nan;
    for (int j = threadIdx.x; j < head; j += threads) d[j] = gradient(x[j], lse, j == target, scale);
    // Four loads before the four stores, as in pass 1 (in place, the compiler may not hoist a load above a store).
    for (i = threadIdx.x; i < vectors; i += 4 * threads) {
        Packed128<float> g[4];
        for (int u = 0; u < 4; u++)
            if (i + u * threads < vectors) g[u] = load128(x + head + 4 * (i + u * threads));
        for (int u = 0; u < 4; u++) {
            const int first = head + 4 * (i + u * threads);
            if (i + u * threads >= vectors) break;
            for (int k = 0; k < 4; k++) g[u].v[k] = gradient(g[u].v[k], lse, first + k == target, scale);
            store128(d + first, g[u]);
        }
    }
    for (int j = tail + threadIdx.x; j < vocab; j += threads) d[j] = gradient(x[j], lse, j == target, scale);
    for (int j = vocab + threadIdx.x; j < stride; j += threads) d[j] = 0.0f;
}
