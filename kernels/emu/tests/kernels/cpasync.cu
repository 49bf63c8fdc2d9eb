// cp.async with partial sizes (zero-fill) in two committed groups, retired one at a time. A size of 0
// comes with a null source, which must not be read.
extern "C" __global__ void keel_test_cp_async(const unsigned char* src, const int* sizes, unsigned char* out) {
    __shared__ __align__(16) unsigned char stage[2][64 * 16];
    const unsigned t = threadIdx.x;
    for (unsigned s = 0; s < 2; ++s)
        for (unsigned b = 0; b < 16; ++b) stage[s][t * 16 + b] = 0xab;
    for (unsigned s = 0; s < 2; ++s) {
        const int size = sizes[s * 64 + t];
        keel_emu::cp_async_16(&stage[s][t * 16], size == 0 ? nullptr : src + s * 1024 + t * 16, size);
        keel_emu::cp_async_commit();
    }
    keel_emu::cp_async_wait(1);
    for (unsigned b = 0; b < 16; ++b) out[t * 16 + b] = stage[0][t * 16 + b];
    keel_emu::cp_async_wait(0);
    for (unsigned b = 0; b < 16; ++b) out[1024 + t * 16 + b] = stage[1][t * 16 + b];
}
