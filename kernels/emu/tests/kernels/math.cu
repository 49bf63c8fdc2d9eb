// The math NVRTC code calls without headers, evaluated per thread on x = in[t] (x in [0.1, 2)).
extern "C" __global__ void keel_test_math(const float* in, float* out) {
    const unsigned t = threadIdx.x;
    const float x = __ldg(in + t);
    float* o = out + 24 * t;
    o[0] = expf(x);
    o[1] = __expf(x);
    o[2] = exp2f(x);
    o[3] = logf(x);
    o[4] = __logf(x);
    o[5] = log2f(x);
    o[6] = sqrtf(x);
    o[7] = rsqrtf(x);
    o[8] = tanhf(x);
    o[9] = erff(x);
    o[10] = fabsf(-x);
    o[11] = fmaxf(x, 1.0f);
    o[12] = fminf(x, 1.0f);
    o[13] = __fdividef(1.0f, x);
    o[14] = __frcp_rn(x);
    o[15] = __fmaf_rn(x, x, 1.0f);
    o[16] = fmaf(x, 2.0f, -1.0f);
    o[17] = __saturatef(x - 1.0f);
    o[18] = max(x, 1.0f) + static_cast<float>(max(static_cast<int>(t), 3)) + static_cast<float>(min(t, 2u)) +
            static_cast<float>(max(static_cast<size_t>(t), static_cast<size_t>(1)) - max(static_cast<long>(t), 1l));
    o[19] = min(x, 1.0f);
    o[20] = __uint_as_float(__float_as_uint(x));
    o[21] = __int_as_float(__float_as_int(x) + 1);
    o[22] = static_cast<float>(__popc(t) + __clz(static_cast<int>(t) + 1) + __ffs(static_cast<int>(t)));
    o[23] = __saturatef(__int_as_float(0x7fc00000));  // NaN -> 0
}
