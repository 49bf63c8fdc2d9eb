// keel_emu.h — the prelude of the CPU emulation of Keel's CUDA kernels.
//
// Force-included (g++ -include) into every kernel translation unit compiled for the emulator, it provides
// what NVRTC provides implicitly — execution-space qualifiers, built-in variables, vector types,
// synchronization, warp intrinsics, atomics, the math functions kernels call without headers — plus the
// C++ twins of the inline-PTX wrappers of kernels/common.cuh (namespace keel_emu) and the trampoline macro
// KEEL_EMU_ENTRY. Everything that needs other CUDA threads goes through libkeel_emu.so, where each CUDA
// thread is a fiber; see README.md in this folder for the model and the exact compile command.
#ifndef KEEL_EMU_H
#define KEEL_EMU_H

#ifndef KEEL_EMULATION
#error "keel_emu.h is the CPU-emulation prelude: compile with -DKEEL_EMULATION"
#endif

// System headers first: the qualifier macros below (__noinline__ in particular) would break libstdc++
// headers included after them. Kernel sources must not include system headers themselves (they are
// written for NVRTC, which has none); the fixed-width integer types of <stdint.h> are available.
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <type_traits>
#include <utility>

#include "keel_emu_api.h"
#include "keel_emu_bridge.h"

// ---------------------------------------------------------------------------------------------------------
// Execution-space and storage qualifiers.
#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
// __restrict__ is a g++ keyword already.

// Static shared memory: one instance per block. `static thread_local` gives exactly that because of how
// the runtime schedules: a block runs start to finish on one worker OS thread (all its fibers live on
// that thread), and a worker runs one block at a time. So "the copy belonging to this OS thread" is "the
// copy belonging to the block now running here", and the next block on that worker reuses it — as a GPU
// reuses an SM's shared memory (contents left by a previous block are, as on the GPU, undefined).
// `extern __shared__` is not supported: dynamic shared memory is reached through
// keel_emu::dynamic_shared_memory() (kernels/common.cuh wraps it).
#define __shared__ static thread_local

// ---------------------------------------------------------------------------------------------------------
// Vector types (alignment as in CUDA's vector_types.h) and their make_ functions.
#define KEEL_EMU_VEC2(T, NAME, ALIGN)                                       \
    struct __attribute__((aligned(ALIGN))) NAME##2 { T x, y; };             \
    inline NAME##2 make_##NAME##2(T x, T y) { return NAME##2{x, y}; }
#define KEEL_EMU_VEC3(T, NAME)                                              \
    struct NAME##3 { T x, y, z; };                                          \
    inline NAME##3 make_##NAME##3(T x, T y, T z) { return NAME##3{x, y, z}; }
#define KEEL_EMU_VEC4(T, NAME, ALIGN)                                       \
    struct __attribute__((aligned(ALIGN))) NAME##4 { T x, y, z, w; };       \
    inline NAME##4 make_##NAME##4(T x, T y, T z, T w) { return NAME##4{x, y, z, w}; }

KEEL_EMU_VEC2(signed char, char, 2)
KEEL_EMU_VEC4(signed char, char, 4)
KEEL_EMU_VEC2(unsigned char, uchar, 2)
KEEL_EMU_VEC4(unsigned char, uchar, 4)
KEEL_EMU_VEC2(short, short, 4)
KEEL_EMU_VEC4(short, short, 8)
KEEL_EMU_VEC2(unsigned short, ushort, 4)
KEEL_EMU_VEC4(unsigned short, ushort, 8)
KEEL_EMU_VEC2(int, int, 8)
KEEL_EMU_VEC3(int, int)
KEEL_EMU_VEC4(int, int, 16)
KEEL_EMU_VEC2(unsigned int, uint, 8)
KEEL_EMU_VEC4(unsigned int, uint, 16)
KEEL_EMU_VEC2(float, float, 8)
KEEL_EMU_VEC3(float, float)
KEEL_EMU_VEC4(float, float, 16)
KEEL_EMU_VEC2(double, double, 16)
KEEL_EMU_VEC2(long long, longlong, 16)
KEEL_EMU_VEC2(unsigned long long, ulonglong, 16)
inline uint3 make_uint3(unsigned int x, unsigned int y, unsigned int z) { return uint3{x, y, z}; }

#undef KEEL_EMU_VEC2
#undef KEEL_EMU_VEC3
#undef KEEL_EMU_VEC4

// ---------------------------------------------------------------------------------------------------------
// Built-in variables. Each names the calling fiber's record in the runtime.
#define threadIdx (::keel_emu_rt_thread()->thread_idx)
#define blockIdx (::keel_emu_rt_thread()->block_idx)
#define blockDim (::keel_emu_rt_thread()->block_dim)
#define gridDim (::keel_emu_rt_thread()->grid_dim)
static constexpr int warpSize = 32;

// ---------------------------------------------------------------------------------------------------------
// Block and warp synchronization. The trailing file/line parameters default to the caller's position
// (g++'s __builtin_FILE/__builtin_LINE), so error reports name the call site.
inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    keel_emu_rt_barrier(KEEL_EMU_BAR_SYNC, 0, file, line);
}
inline int __syncthreads_count(int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return keel_emu_rt_barrier(KEEL_EMU_BAR_COUNT, predicate, file, line);
}
inline int __syncthreads_and(int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return keel_emu_rt_barrier(KEEL_EMU_BAR_AND, predicate, file, line);
}
inline int __syncthreads_or(int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return keel_emu_rt_barrier(KEEL_EMU_BAR_OR, predicate, file, line);
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
    keel_emu_rt_vote(KEEL_EMU_VOTE_SYNC, mask, 1, "__syncwarp", file, line);
}
inline unsigned __ballot_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
    return keel_emu_rt_vote(KEEL_EMU_VOTE_BALLOT, mask, predicate, "__ballot_sync", file, line);
}
inline int __any_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return static_cast<int>(keel_emu_rt_vote(KEEL_EMU_VOTE_ANY, mask, predicate, "__any_sync", file, line));
}
inline int __all_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return static_cast<int>(keel_emu_rt_vote(KEEL_EMU_VOTE_ALL, mask, predicate, "__all_sync", file, line));
}
// The lanes of the caller's warp that execute this call together: the runtime waits until every other
// lane has exited, blocked at a barrier or collective, or called __activemask too (README.md).
inline unsigned __activemask() { return keel_emu_rt_activemask(); }

// Fibers of one block share an OS thread, so ordering them needs only a compiler barrier; blocks run on
// different OS threads, so the device-wide fence is a real one.
inline void __threadfence_block() { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

namespace keel_emu {
namespace detail {
template <class T>
inline uint64_t to_bits(T value) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "warp shuffles move 32- or 64-bit values");
    uint64_t bits = 0;
    memcpy(&bits, &value, sizeof(T));
    return bits;
}
template <class T>
inline T from_bits(uint64_t bits) {
    T value;
    memcpy(&value, &bits, sizeof(T));
    return value;
}
template <class T>
inline T shfl(int mode, unsigned mask, T var, int operand, int width, const char* what, const char* file, int line) {
    return from_bits<T>(keel_emu_rt_shfl(mode, mask, to_bits(var), operand, width, what, file, line));
}
}  // namespace detail
}  // namespace keel_emu

#define KEEL_EMU_SHUFFLES(T)                                                                                 \
    inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize,                           \
                         const char* file = __builtin_FILE(), int line = __builtin_LINE()) {                 \
        return ::keel_emu::detail::shfl(KEEL_EMU_SHFL_IDX, mask, var, src_lane, width, "__shfl_sync", file,  \
                                        line);                                                               \
    }                                                                                                        \
    inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize,                      \
                            const char* file = __builtin_FILE(), int line = __builtin_LINE()) {              \
        return ::keel_emu::detail::shfl(KEEL_EMU_SHFL_UP, mask, var, static_cast<int>(delta), width,         \
                                        "__shfl_up_sync", file, line);                                       \
    }                                                                                                        \
    inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize,                    \
                              const char* file = __builtin_FILE(), int line = __builtin_LINE()) {            \
        return ::keel_emu::detail::shfl(KEEL_EMU_SHFL_DOWN, mask, var, static_cast<int>(delta), width,       \
                                        "__shfl_down_sync", file, line);                                     \
    }                                                                                                        \
    inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize,                      \
                             const char* file = __builtin_FILE(), int line = __builtin_LINE()) {             \
        return ::keel_emu::detail::shfl(KEEL_EMU_SHFL_XOR, mask, var, lane_mask, width, "__shfl_xor_sync",   \
                                        file, line);                                                         \
    }

KEEL_EMU_SHUFFLES(int)
KEEL_EMU_SHUFFLES(unsigned int)
KEEL_EMU_SHUFFLES(long)
KEEL_EMU_SHUFFLES(unsigned long)
KEEL_EMU_SHUFFLES(long long)
KEEL_EMU_SHUFFLES(unsigned long long)
KEEL_EMU_SHUFFLES(float)
KEEL_EMU_SHUFFLES(double)
#undef KEEL_EMU_SHUFFLES

// ---------------------------------------------------------------------------------------------------------
// Atomics. Relaxed, like CUDA's; real atomic instructions because blocks run on several OS threads.
namespace keel_emu {
namespace detail {
template <class T, class F>
inline T atomic_update(T* address, F update) {
    T old;
    __atomic_load(address, &old, __ATOMIC_RELAXED);  // the generic form: works for float and double too
    T desired;
    do {
        desired = update(old);
    } while (!__atomic_compare_exchange(address, &old, &desired, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return old;
}
template <class T>
inline T atomic_cas(T* address, T compare, T value) {
    __atomic_compare_exchange_n(address, &compare, value, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return compare;  // holds the old value whether or not the exchange happened
}
}  // namespace detail
}  // namespace keel_emu

#define KEEL_EMU_INTEGER_ATOMICS(T)                                                                          \
    inline T atomicAdd(T* a, T v) { return __atomic_fetch_add(a, v, __ATOMIC_RELAXED); }                     \
    inline T atomicSub(T* a, T v) { return __atomic_fetch_sub(a, v, __ATOMIC_RELAXED); }                     \
    inline T atomicAnd(T* a, T v) { return __atomic_fetch_and(a, v, __ATOMIC_RELAXED); }                     \
    inline T atomicOr(T* a, T v) { return __atomic_fetch_or(a, v, __ATOMIC_RELAXED); }                       \
    inline T atomicXor(T* a, T v) { return __atomic_fetch_xor(a, v, __ATOMIC_RELAXED); }                     \
    inline T atomicExch(T* a, T v) { return __atomic_exchange_n(a, v, __ATOMIC_RELAXED); }                   \
    inline T atomicCAS(T* a, T compare, T v) { return ::keel_emu::detail::atomic_cas(a, compare, v); }       \
    inline T atomicMax(T* a, T v) {                                                                          \
        return ::keel_emu::detail::atomic_update(a, [v](T old) { return old > v ? old : v; });               \
    }                                                                                                        \
    inline T atomicMin(T* a, T v) {                                                                          \
        return ::keel_emu::detail::atomic_update(a, [v](T old) { return old < v ? old : v; });               \
    }

KEEL_EMU_INTEGER_ATOMICS(int)
KEEL_EMU_INTEGER_ATOMICS(unsigned int)
KEEL_EMU_INTEGER_ATOMICS(unsigned long long)
KEEL_EMU_INTEGER_ATOMICS(long long)
#undef KEEL_EMU_INTEGER_ATOMICS

inline float atomicAdd(float* a, float v) {
    return ::keel_emu::detail::atomic_update(a, [v](float old) { return old + v; });
}
inline double atomicAdd(double* a, double v) {
    return ::keel_emu::detail::atomic_update(a, [v](double old) { return old + v; });
}
inline float atomicExch(float* a, float v) {
    float old;
    __atomic_exchange(a, &v, &old, __ATOMIC_RELAXED);
    return old;
}

// ---------------------------------------------------------------------------------------------------------
// Math. The C99 functions (expf, exp2f, logf, log2f, sqrtf, tanhf, erff, fabsf, fmaxf, fminf, fmaf, ...)
// come from <math.h>. The fast-path intrinsics are computed at full precision: a result within the GPU
// intrinsic's documented error is what tests may assume, not its exact bits.
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanhf(float x) { return tanhf(x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __frsqrt_rn(float x) { return 1.0f / sqrtf(x); }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __saturatef(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }  // NaN -> 0, as on the GPU

#define KEEL_EMU_MINMAX(R, A, B)                                  \
    inline R max(A a, B b) { return static_cast<R>(a) > static_cast<R>(b) ? static_cast<R>(a) : static_cast<R>(b); } \
    inline R min(A a, B b) { return static_cast<R>(a) < static_cast<R>(b) ? static_cast<R>(a) : static_cast<R>(b); }
KEEL_EMU_MINMAX(int, int, int)
KEEL_EMU_MINMAX(unsigned int, unsigned int, unsigned int)
KEEL_EMU_MINMAX(unsigned int, int, unsigned int)
KEEL_EMU_MINMAX(unsigned int, unsigned int, int)
KEEL_EMU_MINMAX(long, long, long)
KEEL_EMU_MINMAX(unsigned long, unsigned long, unsigned long)
KEEL_EMU_MINMAX(unsigned long, long, unsigned long)
KEEL_EMU_MINMAX(unsigned long, unsigned long, long)
KEEL_EMU_MINMAX(long long, long long, long long)
KEEL_EMU_MINMAX(unsigned long long, unsigned long long, unsigned long long)
KEEL_EMU_MINMAX(unsigned long long, long long, unsigned long long)
KEEL_EMU_MINMAX(unsigned long long, unsigned long long, long long)
#undef KEEL_EMU_MINMAX
inline float max(float a, float b) { return fmaxf(a, b); }
inline float min(float a, float b) { return fminf(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(float a, double b) { return fmax(a, b); }
inline double min(float a, double b) { return fmin(a, b); }
inline double max(double a, float b) { return fmax(a, b); }
inline double min(double a, float b) { return fmin(a, b); }

inline unsigned int __float_as_uint(float x) { return ::keel_emu::detail::from_bits<unsigned int>(::keel_emu::detail::to_bits(x)); }
inline int __float_as_int(float x) { return ::keel_emu::detail::from_bits<int>(::keel_emu::detail::to_bits(x)); }
inline float __uint_as_float(unsigned int x) { return ::keel_emu::detail::from_bits<float>(::keel_emu::detail::to_bits(x)); }
inline float __int_as_float(int x) { return ::keel_emu::detail::from_bits<float>(::keel_emu::detail::to_bits(x)); }
inline long long __double_as_longlong(double x) { return ::keel_emu::detail::from_bits<long long>(::keel_emu::detail::to_bits(x)); }
inline double __longlong_as_double(long long x) { return ::keel_emu::detail::from_bits<double>(::keel_emu::detail::to_bits(x)); }

inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned int>(x)); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned int __brev(unsigned int x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    return __builtin_bswap32(x);
}

template <class T>
inline T __ldg(const T* p) { return *p; }

// ---------------------------------------------------------------------------------------------------------
// Traps. A failed assert or __trap() ends the launch with KEEL_EMU_ERROR_TRAP naming block and thread.
#undef assert
#ifdef NDEBUG
#define assert(e) ((void)0)
#else
#define assert(e) ((e) ? (void)0 : ::keel_emu_rt_trap("assert(" #e ") failed", __FILE__, __LINE__, __func__))
#endif
inline void __trap(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    keel_emu_rt_trap("__trap() called", file, line, "");
}
// printf: <stdio.h>'s, writing straight to the host's stdout (the GPU buffers device printf instead).

// ---------------------------------------------------------------------------------------------------------
// C++ twins of the inline-PTX wrappers in kernels/common.cuh.
namespace keel_emu {

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 — warp-collective; every lane of the warp must call
// it. D = A(16x16) * B(16x8) + C, fp32 accumulation. Fragment layout (PTX ISA, "Matrix Fragments for
// mma.m16n8k16 with floating point type"); g = lane >> 2, t = lane % 4; each 32-bit register holds two
// bf16, the lower-indexed element in the low 16 bits:
//   a[0] = A[g][2t..2t+1]     a[1] = A[g+8][2t..2t+1]   a[2] = A[g][2t+8..2t+9]   a[3] = A[g+8][2t+8..2t+9]
//   b[0] = B[2t..2t+1][g]     b[1] = B[2t+8..2t+9][g]
//   c[0], c[1] = C[g][2t], C[g][2t+1]                    c[2], c[3] = C[g+8][2t], C[g+8][2t+1]   (d alike)
inline void mma_m16n8k16_bf16(float d[4], const unsigned a[4], const unsigned b[2], const float c[4],
                              const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    keel_emu_rt_mma_m16n8k16_bf16(d, a, b, c, file, line);
}

// ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16 — warp-collective. Matrix i (8 rows of 8 b16) has
// its row r at the address passed by lane 8i+r. Lane l receives in out[i] the pair
//   M_i[l/4][2(l%4)], M_i[l/4][2(l%4)+1]        (no .trans: row l/4)
//   M_i[2(l%4)][l/4], M_i[2(l%4)+1][l/4]        (.trans: column l/4)
// lower-indexed element in the low 16 bits (PTX ISA, "Warp-level matrix load instruction: ldmatrix").
inline void ldmatrix_x(unsigned* out, int count, bool trans, const void* row_address,
                       const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    keel_emu_rt_ldmatrix(out, count, trans ? 1 : 0, row_address, file, line);
}

// cp.async.cg.shared.global, 16 bytes: copies src_bytes (0..16) from global_src and zero-fills the rest.
// The source is read at issue; the destination is written when a cp_async_wait retires the copy's group
// (or when the thread exits), so a kernel that reads a stage before waiting for it reads stale data here
// as it might on the GPU. Both addresses must be 16-byte aligned.
inline void cp_async_16(void* shared_dst, const void* global_src, int src_bytes,
                        const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    keel_emu_rt_cp_async_16(shared_dst, global_src, src_bytes, file, line);
}
inline void cp_async_commit() { keel_emu_rt_cp_async_commit(); }
// cp.async.wait_group: returns once at most `pending_groups` of the caller's committed groups are pending.
inline void cp_async_wait(int pending_groups, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    keel_emu_rt_cp_async_wait(pending_groups, file, line);
}

// A GPU traps on an access not aligned to its size; x86 does not, so the 16-byte vector loads and stores of
// kernels/common.cuh check here (KEEL_EMU_ERROR_MISALIGNED, with the address).
inline void check_aligned(const void* p, unsigned bytes, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    if (reinterpret_cast<uintptr_t>(p) % bytes != 0) keel_emu_rt_misaligned(p, bytes, file, line);
}

// The block's dynamic shared memory (the launch's dynamic_shared_bytes).
inline void* dynamic_shared_memory() { return keel_emu_rt_dynamic_shared(); }

// ---------------------------------------------------------------------------------------------------------
// Trampolines. keel_emu_launch hands each fiber the cuLaunchKernel-style `void** args`; the entry
// generated by KEEL_EMU_ENTRY unpacks it with the kernel's own parameter types, deduced from the
// function pointer, so the generated source needs nothing but the kernel's name.
namespace detail {
template <class... P, size_t... I>
inline void invoke(void (*kernel)(P...), void** args, std::index_sequence<I...>) {
    (void)args;  // unused for kernels without parameters
    kernel(*static_cast<std::remove_cv_t<P>*>(args[I])...);
}
template <class P>
constexpr uint32_t parameter_kind() {
    using T = std::remove_cv_t<P>;
    if (std::is_pointer<T>::value) return KEEL_EMU_PARAMETER_POINTER;
    if (std::is_floating_point<T>::value) return KEEL_EMU_PARAMETER_FLOAT;
    if (std::is_integral<T>::value)
        return std::is_signed<T>::value ? KEEL_EMU_PARAMETER_SIGNED_INTEGER : KEEL_EMU_PARAMETER_UNSIGNED_INTEGER;
    return KEEL_EMU_PARAMETER_OTHER;
}
template <class... P>
struct signature_table {
    static constexpr uint32_t sizes[sizeof...(P) + 1] = {static_cast<uint32_t>(sizeof(P))..., 0u};
    static constexpr uint32_t alignments[sizeof...(P) + 1] = {static_cast<uint32_t>(alignof(P))..., 0u};
    static constexpr uint32_t kinds[sizeof...(P) + 1] = {parameter_kind<P>()..., 0u};
    static constexpr keel_emu_signature value = {static_cast<uint32_t>(sizeof...(P)), 0u, sizes, alignments, kinds};
};
template <class... P>
inline void entry(void (*kernel)(P...), void** args) {
    invoke(kernel, args, std::index_sequence_for<P...>{});
}
template <class... P>
inline const keel_emu_signature* signature(void (*)(P...)) {
    return &signature_table<P...>::value;
}
}  // namespace detail
}  // namespace keel_emu

#ifdef __SANITIZE_THREAD__
// g++ -fsanitize=thread: every access of this object calls the runtime's hooks, which the race, init and spin
// checks need; the runtime looks for this symbol before it lets a launch ask for them.
extern "C" __attribute__((visibility("default"))) const int keel_emu_instrumented = 1;
#endif

// For an entry point NAME, defines keel_emu_entry_NAME (pass it to keel_emu_launch) and
// keel_emu_signature_NAME (parameter count, sizes, alignments and kinds, for the caller to check its arguments:
// the .NET launchers check every emulated launch against it).
// Must be expanded in the translation unit that defines the kernel.
#define KEEL_EMU_ENTRY(NAME)                                                                                 \
    extern "C" __attribute__((visibility("default"))) void keel_emu_entry_##NAME(void** args) {              \
        ::keel_emu::detail::entry(&NAME, args);                                                              \
    }                                                                                                        \
    extern "C" __attribute__((visibility("default"))) const keel_emu_signature* keel_emu_signature_##NAME() { \
        return ::keel_emu::detail::signature(&NAME);                                                         \
    }

#endif  // KEEL_EMU_H
