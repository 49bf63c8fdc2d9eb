// mma_m16n8k16_bf16 for one warp, D = A(16x16) * B(16x8) + C, bf16 operands as unsigned short.
// keel_test_mma_fragments builds the fragments from global memory by the PTX ISA table;
// keel_test_mma_ldmatrix loads them the way tensor-core kernels do, with ldmatrix from shared memory
// (A with .x4; B once from a column-major copy with .x2 and once from the row-major B with .x2.trans).

__device__ unsigned pack(unsigned short lo, unsigned short hi) { return lo | (static_cast<unsigned>(hi) << 16); }

__device__ void store_d(const float d[4], float* D) {  // D row-major 16x8
    const unsigned lane = threadIdx.x % 32, g = lane >> 2, t = lane % 4;
    D[g * 8 + 2 * t] = d[0];
    D[g * 8 + 2 * t + 1] = d[1];
    D[(g + 8) * 8 + 2 * t] = d[2];
    D[(g + 8) * 8 + 2 * t + 1] = d[3];
}

__device__ void load_c(const float* C, float c[4]) {
    const unsigned lane = threadIdx.x % 32, g = lane >> 2, t = lane % 4;
    c[0] = C[g * 8 + 2 * t];
    c[1] = C[g * 8 + 2 * t + 1];
    c[2] = C[(g + 8) * 8 + 2 * t];
    c[3] = C[(g + 8) * 8 + 2 * t + 1];
}

// A row-major 16x16, B row-major 16x8 (k, n), C and D row-major 16x8.
extern "C" __global__ void keel_test_mma_fragments(const unsigned short* A, const unsigned short* B, const float* C,
                                                   float* D) {
    const unsigned lane = threadIdx.x % 32, g = lane >> 2, t = lane % 4;
    unsigned a[4], b[2];
    float c[4], d[4];
    a[0] = pack(A[g * 16 + 2 * t], A[g * 16 + 2 * t + 1]);
    a[1] = pack(A[(g + 8) * 16 + 2 * t], A[(g + 8) * 16 + 2 * t + 1]);
    a[2] = pack(A[g * 16 + 2 * t + 8], A[g * 16 + 2 * t + 9]);
    a[3] = pack(A[(g + 8) * 16 + 2 * t + 8], A[(g + 8) * 16 + 2 * t + 9]);
    b[0] = pack(B[(2 * t) * 8 + g], B[(2 * t + 1) * 8 + g]);
    b[1] = pack(B[(2 * t + 8) * 8 + g], B[(2 * t + 9) * 8 + g]);
    load_c(C, c);
    keel_emu::mma_m16n8k16_bf16(d, a, b, c);
    store_d(d, D);
}

extern "C" __global__ void keel_test_mma_ldmatrix(const unsigned short* A, const unsigned short* B, const float* C,
                                                  float* D_colmajor_b, float* D_trans_b) {
    __shared__ __align__(16) unsigned short As[16][16];
    __shared__ __align__(16) unsigned short Bt[8][16];  // B transposed: n rows of k
    __shared__ __align__(16) unsigned short Bs[16][8];  // B as is: k rows of n
    const unsigned lane = threadIdx.x % 32;
    for (unsigned i = lane; i < 256; i += 32) As[i / 16][i % 16] = A[i];
    for (unsigned i = lane; i < 128; i += 32) {
        Bs[i / 8][i % 8] = B[i];
        Bt[i % 8][i / 8] = B[i];
    }
    __syncwarp();
    unsigned a[4], b[2];
    float c[4], d[4];
    keel_emu::ldmatrix_x(a, 4, false, &As[lane % 16][(lane / 16) * 8]);
    keel_emu::ldmatrix_x(b, 2, false, &Bt[lane % 8][((lane / 8) % 2) * 8]);
    load_c(C, c);
    keel_emu::mma_m16n8k16_bf16(d, a, b, c);
    store_d(d, D_colmajor_b);
    keel_emu::ldmatrix_x(b, 2, true, &Bs[lane % 16][0]);
    keel_emu::mma_m16n8k16_bf16(d, a, b, c);
    store_d(d, D_trans_b);
}
