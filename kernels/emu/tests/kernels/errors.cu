// Planted bugs, each of which the emulator must report (and survive).

// Half the block returns before the barrier.
extern "C" __global__ void keel_test_early_return(float* out) {
    if (threadIdx.x >= blockDim.x / 2) return;
    out[threadIdx.x] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = 2.0f;
}

// Two groups of threads wait at different __syncthreads calls.
extern "C" __global__ void keel_test_divergent_barrier(float* out) {
    if (threadIdx.x < 64) {
        __syncthreads();
        out[threadIdx.x] = 1.0f;
    } else {
        __syncthreads();
        out[threadIdx.x] = 2.0f;
    }
}

// Lanes 16-31 exit; lanes 0-15 shuffle with the full mask.
extern "C" __global__ void keel_test_mask_exited(float* out) {
    if (threadIdx.x % 32 >= 16) return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, out[threadIdx.x], 1);
}

// Lanes 0-15 use the full mask, lanes 16-31 the upper half only.
extern "C" __global__ void keel_test_mask_mismatch(float* out) {
    const unsigned mask = threadIdx.x % 32 < 16 ? 0xffffffffu : 0xffff0000u;
    out[threadIdx.x] = __shfl_down_sync(mask, out[threadIdx.x], 1);
}

// A mask that leaves out the calling lane.
extern "C" __global__ void keel_test_mask_without_self(float* out) {
    out[threadIdx.x] = static_cast<float>(__ballot_sync(0x1u << ((threadIdx.x + 1) % 32), 1));
}

// Thread `who` of block `block` writes element `index` of `p`.
extern "C" __global__ void keel_test_write_global(float* p, int index, int block, int who) {
    if (static_cast<int>(blockIdx.x) == block && static_cast<int>(threadIdx.x) == who) p[index] = 42.0f;
}

// Static shared array indexed by a kernel argument.
extern "C" __global__ void keel_test_static_shared_index(float* out, int index) {
    __shared__ float tile[64];
    tile[threadIdx.x] = static_cast<float>(threadIdx.x);
    __syncthreads();
    if (threadIdx.x == 3) tile[index] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = tile[threadIdx.x];
}

// Local array indexed by a kernel argument.
extern "C" __global__ void keel_test_local_index(float* out, int index) {
    float local[16];
    for (int i = 0; i < 16; ++i) local[i] = out[i];
    if (threadIdx.x == 5) local[index] = 3.0f;
    out[threadIdx.x] = local[threadIdx.x % 16];
}

// Dynamic shared memory indexed by a kernel argument (in floats).
extern "C" __global__ void keel_test_dynamic_shared_index(float* out, int index) {
    float* s = static_cast<float*>(keel_emu::dynamic_shared_memory());
    if (threadIdx.x == 7) s[index] = 5.0f;
    __syncthreads();
    out[threadIdx.x] = s[0];
}

extern "C" __global__ void keel_test_assert(const int* values) {
    assert(values[threadIdx.x] >= 0);
}

__noinline__ __device__ int deep(int n) {
    volatile char frame[1024];
    frame[0] = static_cast<char>(n);
    return n == 0 ? 0 : deep(n - 1) + frame[0];
}

extern "C" __global__ void keel_test_recursion(int* out, int depth) {
    out[threadIdx.x] = deep(depth);
}

extern "C" __global__ void keel_test_divide(int* out, int numerator, int denominator) {
    out[threadIdx.x] = numerator / (denominator + static_cast<int>(threadIdx.x % 2));
}

// One frame far larger than the default fiber stack (and than its guard page).
extern "C" __global__ void keel_test_big_frame(int* out, int index) {
    volatile char frame[200000];
    frame[index] = 1;
    out[threadIdx.x] = frame[index];
}
