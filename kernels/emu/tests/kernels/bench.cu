// Kernels timed by keel_emu_bench.
extern "C" __global__ void keel_bench_reverse(const float* in, float* out) {
    __shared__ float tile[256];
    const unsigned t = threadIdx.x;
    tile[t] = in[t];
    __syncthreads();
    out[t] = tile[255 - t];
}

extern "C" __global__ void keel_bench_warp_sum(const float* in, float* out) {
    const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    float v = in[i];
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
    if (threadIdx.x % 32 == 0) out[i / 32] = v;
}

extern "C" __global__ void keel_bench_barriers(int* out, int rounds) {
    int sum = 0;
    for (int r = 0; r < rounds; ++r) {
        sum += r;
        __syncthreads();
    }
    out[threadIdx.x] = sum;
}

extern "C" __global__ void keel_bench_empty(int* out) {
    if (threadIdx.x == 1u << 20) out[0] = 1;
}

// A block-wide stencil through shared memory: per round, a store, three loads and two barriers per thread, plus a
// global load and store per thread; what the checking modes cost is measured on it.
extern "C" __global__ void keel_bench_stencil(const float* in, float* out, int rounds) {
    __shared__ float tile[256];
    const unsigned t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
    float v = in[i];
    for (int r = 0; r < rounds; ++r) {
        tile[t] = v;
        __syncthreads();
        v = 0.25f * (tile[(t + 255) % 256] + 2.0f * tile[t] + tile[(t + 1) % 256]);
        __syncthreads();
    }
    out[i] = v;
}
