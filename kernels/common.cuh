// common.cuh — what every Keel kernel shares: the bf16 type and its conversions, 16-byte vector loads and
// stores, warp and block reductions, and the wrappers around the PTX instructions the kernels use
// (mma.sync, ldmatrix, cp.async, cvt to bf16).
//
// No CUDA toolkit header is included: NVRTC 11.8+ compiles this as is, and so does the host C++ compiler
// under KEEL_EMULATION, where the prelude kernels/emu/keel_emu.h supplies the CUDA built-ins. Inline PTX
// appears only inside the wrappers below, each with a plain C++ twin for the emulator.
#pragma once

typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

// ----------------------------------------------------------------------------------------------------------
// bf16: 1 sign, 8 exponent, 7 mantissa bits; the top half of an fp32. Storage type only: arithmetic is fp32.

struct bf16 {
    unsigned short bits;
};

__device__ __forceinline__ float bf16_to_float(bf16 h) { return __uint_as_float((u32)h.bits << 16); }

// Round to nearest, ties to even (the GPU's cvt.rn); NaN stays a quiet NaN.
__device__ __forceinline__ bf16 float_to_bf16(float f) {
#ifdef KEEL_EMULATION
    const u32 x = __float_as_uint(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return bf16{(unsigned short)((x >> 16) | 0x40u)};
    return bf16{(unsigned short)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16)};
#else
    unsigned short r;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(f));
    return bf16{r};
#endif
}

// Two floats to a bf16 pair in one register: lo in bits 0..15, hi in bits 16..31 (the mma operand layout).
__device__ __forceinline__ u32 pack_bf16x2(float lo, float hi) {
#ifdef KEEL_EMULATION
    return (u32)float_to_bf16(lo).bits | ((u32)float_to_bf16(hi).bits << 16);
#else
    u32 r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));  // the first source goes to the upper half
    return r;
#endif
}

// Storage-type adapters, so one kernel body serves float and bf16 tensors.
__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(bf16 x) { return bf16_to_float(x); }
template <class T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ bf16 from_float<bf16>(float x) { return float_to_bf16(x); }

// ----------------------------------------------------------------------------------------------------------
// 16-byte vectors. One 16-byte access per thread is what lets a memory-bound kernel reach full bandwidth;
// callers guarantee 16-byte alignment (the launchers check it).

template <class T>
struct alignas(16) Packed128 {
    static constexpr int size = 16 / sizeof(T);
    T v[size];
};

template <class T> __device__ __forceinline__ Packed128<T> load128(const T* p) {
#ifdef KEEL_EMULATION
    keel_emu::check_aligned(p, 16);  // the GPU traps on a misaligned vector access; the CPU would not
#endif
    return *reinterpret_cast<const Packed128<T>*>(p);
}
template <class T> __device__ __forceinline__ void store128(T* p, const Packed128<T>& x) {
#ifdef KEEL_EMULATION
    keel_emu::check_aligned(p, 16);
#endif
    *reinterpret_cast<Packed128<T>*>(p) = x;
}

// ----------------------------------------------------------------------------------------------------------
// Reductions. Blocks are one-dimensional with a multiple of 32 threads.

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

// Sum over the block, returned to every thread. scratch: 32 floats of shared memory. The trailing barrier
// lets the caller reuse scratch right away.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    v = warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0.0f;
    v = warp_sum(v);
    __syncthreads();
    return v;
}

// ----------------------------------------------------------------------------------------------------------
// Dynamic shared memory, reached through this helper rather than `extern __shared__` so that the emulator
// can hand out the block's buffer.

template <class T> __device__ __forceinline__ T* dynamic_smem() {
#ifdef KEEL_EMULATION
    return static_cast<T*>(keel_emu::dynamic_shared_memory());
#else
    extern __shared__ __align__(16) unsigned char keel_dynamic_smem[];
    return reinterpret_cast<T*>(keel_dynamic_smem);
#endif
}

// ----------------------------------------------------------------------------------------------------------
// Tensor cores (sm_80+). mma.sync m16n8k16, bf16 inputs, fp32 accumulators. Per lane (g = lane / 4,
// t = lane % 4), as the PTX ISA lays out the fragments:
//   A 16x16 row-major: a[0] = A[g][2t..2t+1], a[1] = A[g+8][2t..2t+1], a[2] = A[g][2t+8..2t+9], a[3] = A[g+8][2t+8..2t+9]
//   B 16x8 (k x n):    b[0] = B[2t..2t+1][g], b[1] = B[2t+8..2t+9][g]
//   C, D 16x8:         c[0..1] = C[g][2t..2t+1], c[2..3] = C[g+8][2t..2t+1]
// Each 32-bit register holds two bf16, the lower index in the low half.

__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const u32 (&a)[4], const u32 (&b)[2], const float (&c)[4]) {
#ifdef KEEL_EMULATION
    keel_emu::mma_m16n8k16_bf16(d, a, b, c);
#else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]),
          "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#endif
}

// ldmatrix: lanes 8i..8i+7 give the shared-memory addresses of the eight 16-byte rows of 8x8 matrix i; lane l
// receives, in register i, row l/4, columns 2(l%4)..2(l%4)+1 of matrix i (of its transpose with .trans).
__device__ __forceinline__ void ldmatrix_x4(u32 (&r)[4], const void* row) {
#ifdef KEEL_EMULATION
    keel_emu::ldmatrix_x(r, 4, false, row);
#else
    const u32 address = (u32)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(address));
#endif
}

__device__ __forceinline__ void ldmatrix_x4_trans(u32 (&r)[4], const void* row) {
#ifdef KEEL_EMULATION
    keel_emu::ldmatrix_x(r, 4, true, row);
#else
    const u32 address = (u32)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(address));
#endif
}

__device__ __forceinline__ void ldmatrix_x2(u32 (&r)[2], const void* row) {
#ifdef KEEL_EMULATION
    keel_emu::ldmatrix_x(r, 2, false, row);
#else
    const u32 address = (u32)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(address));
#endif
}

__device__ __forceinline__ void ldmatrix_x2_trans(u32 (&r)[2], const void* row) {
#ifdef KEEL_EMULATION
    keel_emu::ldmatrix_x(r, 2, true, row);
#else
    const u32 address = (u32)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(address));
#endif
}

// cp.async (sm_80+): copies 16 bytes global -> shared without staging through registers; src_bytes < 16
// zero-fills the rest, which is how tiles read past a ragged edge without a branch per element.
__device__ __forceinline__ void cp_async_16(void* shared_dst, const void* global_src, int src_bytes) {
#ifdef KEEL_EMULATION
    keel_emu::cp_async_16(shared_dst, global_src, src_bytes);
#else
    const u32 address = (u32)__cvta_generic_to_shared(shared_dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" :: "r"(address), "l"(global_src), "r"(src_bytes));
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#ifdef KEEL_EMULATION
    keel_emu::cp_async_commit();
#else
    asm volatile("cp.async.commit_group;\n" ::);
#endif
}

// Waits until at most N committed groups are still in flight.
template <int N> __device__ __forceinline__ void cp_async_wait() {
#ifdef KEEL_EMULATION
    keel_emu::cp_async_wait(N);
#else
    asm volatile("cp.async.wait_group %0;\n" :: "n"(N));
#endif
}
