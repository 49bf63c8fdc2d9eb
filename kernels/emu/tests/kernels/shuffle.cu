// Every shuffle variant, for each value type, with a per-lane operand and a width given by the host.
template <class T>
__device__ void shuffle(const T* in, const int* operand, T* out, int op, int width) {
    const unsigned t = blockIdx.x * blockDim.x + threadIdx.x;
    const T v = in[t];
    const int o = operand[t];
    T r;
    switch (op) {
        case 0: r = __shfl_sync(0xffffffffu, v, o, width); break;
        case 1: r = __shfl_up_sync(0xffffffffu, v, static_cast<unsigned>(o), width); break;
        case 2: r = __shfl_down_sync(0xffffffffu, v, static_cast<unsigned>(o), width); break;
        default: r = __shfl_xor_sync(0xffffffffu, v, o, width); break;
    }
    out[t] = r;
}

extern "C" __global__ void keel_test_shfl_int(const int* in, const int* operand, int* out, int op, int width) {
    shuffle(in, operand, out, op, width);
}
extern "C" __global__ void keel_test_shfl_unsigned(const unsigned* in, const int* operand, unsigned* out, int op, int width) {
    shuffle(in, operand, out, op, width);
}
extern "C" __global__ void keel_test_shfl_float(const float* in, const int* operand, float* out, int op, int width) {
    shuffle(in, operand, out, op, width);
}
extern "C" __global__ void keel_test_shfl_longlong(const long long* in, const int* operand, long long* out, int op, int width) {
    shuffle(in, operand, out, op, width);
}
extern "C" __global__ void keel_test_shfl_ulonglong(const unsigned long long* in, const int* operand, unsigned long long* out, int op, int width) {
    shuffle(in, operand, out, op, width);
}
extern "C" __global__ void keel_test_shfl_double(const double* in, const int* operand, double* out, int op, int width) {
    shuffle(in, operand, out, op, width);
}
