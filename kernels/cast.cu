// cast.cu — element type conversions between fp32 and bf16.
//
//   keel_cast_f32_to_bf16:  out[i] = bf16_rn(in[i])       (round to nearest, ties to even)
//   keel_cast_bf16_to_f32:  out[i] = float(in[i])         (exact)
//
// Bytes: 6 per element either way (4 read + 2 written, or 2 + 4). No FLOPs to speak of: bandwidth bound.
// Launch: 1-D blocks of 256 threads; each thread converts 8 elements per step (two 16-byte fp32 accesses and
// one 16-byte bf16 access) in a grid-stride loop; the last n % 8 elements are converted one per thread.
// Pointers are 16-byte aligned (checked by the launcher).
#include "common.cuh"

extern "C" __global__ void keel_cast_f32_to_bf16(const float* __restrict__ in, bf16* __restrict__ out, i64 n) {
    const i64 vectors = n / 8;
    const i64 stride = (i64)gridDim.x * blockDim.x;
    const i64 first = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    for (i64 i = first; i < vectors; i += stride) {
        const Packed128<float> lo = load128(in + 8 * i), hi = load128(in + 8 * i + 4);
        Packed128<bf16> packed;
        for (int j = 0; j < 4; j++) {
            packed.v[j] = float_to_bf16(lo.v[j]);
            packed.v[4 + j] = float_to_bf16(hi.v[j]);
        }
        store128(out + 8 * i, packed);
    }
    const i64 tail = 8 * vectors + first;
    if (tail < n) out[tail] = float_to_bf16(in[tail]);
}

extern "C" __global__ void keel_cast_bf16_to_f32(const bf16* __restrict__ in, float* __restrict__ out, i64 n) {
    const i64 vectors = n / 8;
    const i64 stride = (i64)gridDim.x * blockDim.x;
    const i64 first = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    for (i64 i = first; i < vectors; i += stride) {
        const Packed128<bf16> packed = load128(in + 8 * i);
        Packed128<float> lo, hi;
        for (int j = 0; j < 4; j++) {
            lo.v[j] = bf16_to_float(packed.v[j]);
            hi.v[j] = bf16_to_float(packed.v[4 + j]);
        }
        store128(out + 8 * i, lo);
        store128(out + 8 * i + 4, hi);
    }
    const i64 tail = 8 * vectors + first;
    if (tail < n) out[tail] = bf16_to_float(in[tail]);
}
