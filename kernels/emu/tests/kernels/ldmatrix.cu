// ldmatrix x1/x2/x4, plain and .trans. Lane l supplies the address of shared row perm[l] (a permutation,
// so each lane's address really matters); lanes past 8*count pass null, which must not be read.
extern "C" __global__ void keel_test_ldmatrix(const unsigned short* matrix, const int* perm, unsigned* out, int count,
                                              int trans) {
    __shared__ __align__(16) unsigned short rows[32][8];
    const unsigned lane = threadIdx.x;
    for (unsigned c = 0; c < 8; ++c) rows[lane][c] = matrix[lane * 8 + c];
    __syncwarp();
    const void* address = lane < 8u * static_cast<unsigned>(count) ? &rows[perm[lane]][0] : nullptr;
    unsigned registers[4] = {0xdeadbeefu, 0xdeadbeefu, 0xdeadbeefu, 0xdeadbeefu};
    keel_emu::ldmatrix_x(registers, count, trans != 0, address);
    for (int i = 0; i < 4; ++i) out[lane * 4 + i] = registers[i];
}
