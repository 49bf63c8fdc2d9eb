// Block-wide barriers: a reverse through static shared memory (wrong without the barrier, since thread 0
// runs before thread 255 has written), and a Hillis-Steele scan plus the __syncthreads_* reductions.
extern "C" __global__ void keel_test_reverse(const float* in, float* out) {
    __shared__ float tile[1024];
    const unsigned t = threadIdx.x, base = blockIdx.x * blockDim.x;
    tile[t] = in[base + t];
    __syncthreads();
    out[base + t] = tile[blockDim.x - 1 - t];
}

extern "C" __global__ void keel_test_scan(const int* in, int* out, int* votes) {
    __shared__ int buffer[256];
    const unsigned t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
    buffer[t] = in[i];
    __syncthreads();
    for (unsigned offset = 1; offset < blockDim.x; offset *= 2) {
        const int add = t >= offset ? buffer[t - offset] : 0;
        __syncthreads();
        buffer[t] += add;
        __syncthreads();
    }
    out[i] = buffer[t];
    const int positive = in[i] > 0;
    const int count = __syncthreads_count(positive);
    const int all = __syncthreads_and(positive);
    const int any = __syncthreads_or(positive);
    if (t == 0) {
        votes[3 * blockIdx.x + 0] = count;
        votes[3 * blockIdx.x + 1] = all;
        votes[3 * blockIdx.x + 2] = any;
    }
}
