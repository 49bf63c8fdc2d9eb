// Bugs that only the emulator's checking modes catch (EmulatorCheckTests): each kernel is plausible, runs without
// complaint in the plain emulator, and fails on some GPU or some day. They compile with NVRTC too (the limits check
// reads their registers and shared memory from NVRTC's CUBIN).
#include "common.cuh"

// Shifts a block by one element through shared memory, without a barrier between the writes and the reads when
// synchronized = 0. The plain emulator runs a block's threads one after another, so each read finds its element
// already written and the result is right; on a GPU, warps interleave.
extern "C" __global__ void keel_check_shift(const float* in, float* out, int synchronized) {
    __shared__ float tile[256];
    const int t = threadIdx.x, n = blockDim.x;
    tile[t] = in[blockIdx.x * n + t];
    if (synchronized) __syncthreads();
    out[blockIdx.x * n + t] = t > 0 ? tile[t - 1] : 0.0f;
}

// Copies its rows with cp.async and reads them before waiting (early = 1) or after.
extern "C" __global__ void keel_check_copy_rows(const float* in, float* out, int early) {
    __shared__ __align__(16) float rows[128 * 4];
    const int t = threadIdx.x;
    cp_async_16(rows + 4 * t, in + 4 * t, 16);
    cp_async_commit();
    if (!early) cp_async_wait<0>();
    out[t] = rows[4 * t] + rows[4 * t + 3];
    cp_async_wait<0>();
}

// out += in: relies on out starting at zero, which fresh device memory does not.
extern "C" __global__ void keel_check_accumulate(const float* in, float* out, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] += in[i];
}

// Block b publishes after block b - 1 has, by blockIdx: it assumes blocks start in index order.
extern "C" __global__ void keel_check_chain(int* flags, float* out) {
    const int b = blockIdx.x;
    if (threadIdx.x == 0) {
        if (b > 0)
            while (*reinterpret_cast<volatile int*>(flags + b - 1) == 0) {
            }
        out[b] = (float)b;
        __threadfence();
        atomicExch(flags + b, 1);
    }
}

// 40 KiB of static shared memory; launched with more dynamic shared memory than some GPUs allow a block.
extern "C" __global__ void keel_check_big_shared(float* out) {
    __shared__ float big[10240];
    float* dynamic = dynamic_smem<float>();
    for (int i = threadIdx.x; i < 10240; i += blockDim.x) big[i] = (float)i;
    dynamic[threadIdx.x] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = big[10239 - threadIdx.x] + dynamic[threadIdx.x];
}

// Keeps 72 values live per thread: more registers than 1024 threads of a block may hold together.
extern "C" __global__ void keel_check_many_registers(const float* in, float* out) {
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    float r[72];
#pragma unroll
    for (int i = 0; i < 72; i++) r[i] = in[(t + 7 * i) % 4096];
#pragma unroll
    for (int k = 0; k < 4; k++)
#pragma unroll
        for (int i = 0; i < 72; i++) r[i] = r[i] * r[(i + k + 1) % 72] + 1.0f;
    float sum = 0.0f;
#pragma unroll
    for (int i = 0; i < 72; i++) sum += r[i];
    out[t] = sum;
}

// A 16-byte vector load `offset` floats into the buffer: misaligned unless offset is a multiple of 4.
extern "C" __global__ void keel_check_vector_load(const float* in, float* out, int offset) {
    const Packed128<float> x = load128(in + offset + 4 * threadIdx.x);
    out[threadIdx.x] = x.v[0] + x.v[1] + x.v[2] + x.v[3];
}
