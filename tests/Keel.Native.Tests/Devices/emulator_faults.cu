// Kernels that break the rules on purpose, so the tests can check that the emulator catches each fault
// with a clear message and that the process and later launches survive it.
#include "common.cuh"

// Half of the block returns before a barrier the other half waits at.
extern "C" __global__ void keel_fault_early_return(float* out) {
    if (threadIdx.x >= blockDim.x / 2) return;
    __syncthreads();
    out[threadIdx.x] = 1.0f;
}

// One element past the end of an n-element buffer.
extern "C" __global__ void keel_fault_write_past_end(float* out, int n) {
    out[n + threadIdx.x] = 1.0f;
}

// A static shared array indexed past its bound.
extern "C" __global__ void keel_fault_shared_past_end(float* out, int index) {
    __shared__ float tile[32];
    tile[threadIdx.x] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = tile[index];
}

// A full-warp shuffle after half of the warp has exited.
extern "C" __global__ void keel_fault_shuffle_after_exit(float* out) {
    if (threadIdx.x % 32 >= 16) return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}

// A correct kernel, to show that launches after a fault still work: out[i] = i.
extern "C" __global__ void keel_fault_none(float* out, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = (float)i;
}
