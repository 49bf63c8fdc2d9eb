// A block sum through dynamic shared memory: blockDim.x floats of data, then a tree reduction in place.
extern "C" __global__ void keel_test_dynamic_shared(const float* in, float* out) {
    float* s = static_cast<float*>(keel_emu::dynamic_shared_memory());
    const unsigned t = threadIdx.x;
    s[t] = in[blockIdx.x * blockDim.x + t];
    __syncthreads();
    for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
        if (t < half) s[t] += s[t + half];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = s[0];
}
