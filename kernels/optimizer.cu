// optimizer.cu — the optimizer step: global gradient norm (for clipping) and fused AdamW.
//
// Global norm, deterministic (no float atomics; the summation order depends only on n):
//   keel_optimizer_sumsq_partial:  partials[b] = sum of g[i]^2 over the slice block b strides over
//   keel_optimizer_clip_factor:    norm = sqrt(sum_b partials[b]) (summed in fp64, in block order);
//                                  scale = max_norm > 0 ? min(1, max_norm / (norm + 1e-6)) : 1;
//                                  result[0] = norm, result[1] = scale
//   Bytes: 4 per gradient element read. FLOPs: 2 per element.
//   Launch: partial: 1-D blocks of 256 threads, grid chosen by the launcher from n alone (so the order is
//   the same on every GPU), 4 elements per thread per step; finalize: one block of 256 threads.
//
// AdamW (decoupled weight decay), fp32 master weights and moments, t = step number from 1:
//   g' = g * scale                               (scale = result[1] above, read here on the device, so the launch
//                                                 needs nothing from the host; the trainer reads result back
//                                                 before it for the skip decision, see AdamWOptimizer.Step)
//   m  = beta1 m + (1 - beta1) g'
//   v  = beta2 v + (1 - beta2) g'^2
//   p -= lr * ( (m / c1) / (sqrt(v / c2) + eps) + weight_decay * p ),   c1 = 1 - beta1^t, c2 = 1 - beta2^t
//   and, when param_bf16 is not null, param_bf16 = bf16_rn(p): the GEMM operand copy, written in the same pass.
//   Bytes: 16 read (p, g, m, v) + 12 written (p, m, v) + 2 written (bf16 copy) = 30 per parameter.
//   FLOPs: 17 per parameter (the clip scale 1, m 3, v 4, the update 9 with the square root and the division
//   counted as one each), far below what the 30 bytes allow: bandwidth bound.
//   Launch: 1-D blocks of 256 threads, 4 parameters per thread per step (16-byte accesses), grid-stride;
//   the last n % 4 parameters one per thread.
#include "common.cuh"

extern "C" __global__ void keel_optimizer_sumsq_partial(const float* __restrict__ g, i64 n, float* __restrict__ partials) {
    __shared__ float scratch[32];
    const i64 vectors = n / 4;
    const i64 stride = (i64)gridDim.x * blockDim.x;
    const i64 first = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    float sum = 0.0f;
    for (i64 i = first; i < vectors; i += stride) {
        const Packed128<float> x = load128(g + 4 * i);
        for (int j = 0; j < 4; j++) sum += x.v[j] * x.v[j];
    }
    const i64 tail = 4 * vectors + first;
    if (tail < n) sum += g[tail] * g[tail];
    sum = block_sum(sum, scratch);
    if (threadIdx.x == 0) partials[blockIdx.x] = sum;
}

extern "C" __global__ void keel_optimizer_clip_factor(const float* __restrict__ partials, int count, float max_norm,
                                                      float* __restrict__ result) {
    // One block; fp64 keeps the finalize exact enough that the order of the partials hardly matters.
    __shared__ double scratch[256];
    double sum = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) sum += (double)partials[i];
    scratch[threadIdx.x] = sum;
    __syncthreads();
    for (int width = blockDim.x / 2; width > 0; width /= 2) {
        if (threadIdx.x < width) scratch[threadIdx.x] += scratch[threadIdx.x + width];
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        const float norm = (float)sqrt(scratch[0]);
        result[0] = norm;
        result[1] = max_norm > 0.0f ? fminf(1.0f, max_norm / (norm + 1e-6f)) : 1.0f;
    }
}

__device__ __forceinline__ float adamw_update(float& p, float g, float& m, float& v, float lr, float beta1, float beta2,
                                              float c1, float c2, float eps, float weight_decay) {
    m = beta1 * m + (1.0f - beta1) * g;
    v = beta2 * v + (1.0f - beta2) * g * g;
    p -= lr * ((m / c1) / (sqrtf(v / c2) + eps) + weight_decay * p);
    return p;
}

extern "C" __global__ void keel_optimizer_adamw(float* __restrict__ param, const float* __restrict__ grad,
                                                float* __restrict__ m, float* __restrict__ v, bf16* __restrict__ param_bf16,
                                                i64 n, float lr, float beta1, float beta2, float c1, float c2, float eps,
                                                float weight_decay, const float* __restrict__ clip) {
    const float scale = clip[1];
    const i64 vectors = n / 4;
    const i64 stride = (i64)gridDim.x * blockDim.x;
    const i64 first = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    for (i64 i = first; i < vectors; i += stride) {
        Packed128<float> p = load128(param + 4 * i), mm = load128(m + 4 * i), vv = load128(v + 4 * i);
        const Packed128<float> g = load128(grad + 4 * i);
        for (int j = 0; j < 4; j++)
            adamw_update(p.v[j], g.v[j] * scale, mm.v[j], vv.v[j], lr, beta1, beta2, c1, c2, eps, weight_decay);
        store128(param + 4 * i, p);
        store128(m + 4 * i, mm);
        store128(v + 4 * i, vv);
        if (param_bf16 != nullptr) {
            // 8-byte store: four bf16.
            const u32 lo = pack_bf16x2(p.v[0], p.v[1]), hi = pack_bf16x2(p.v[2], p.v[3]);
            reinterpret_cast<u64*>(param_bf16)[i] = (u64)lo | ((u64)hi << 32);
        }
    }
    const i64 tail = 4 * vectors + first;
    if (tail < n) {
        const float p = adamw_update(param[tail], grad[tail] * scale, m[tail], v[tail], lr, beta1, beta2, c1, c2, eps, weight_decay);
        if (param_bf16 != nullptr) param_bf16[tail] = float_to_bf16(p);
    }
}
