// keel_emu_bridge.h — the internal interface between the prelude (keel_emu.h, compiled into every kernel
// shared object) and the runtime (libkeel_emu.so). Not part of the public C ABI: both sides are built
// from the same tree, so these declarations may change together with the runtime.
#ifndef KEEL_EMU_BRIDGE_H
#define KEEL_EMU_BRIDGE_H

#include <stdint.h>

struct uint3 {
    unsigned int x, y, z;
};

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};

// What one emulated CUDA thread sees of itself. Lives in the runtime's fiber record; the prelude reads it
// through keel_emu_rt_thread().
struct keel_emu_thread_info {
    uint3 thread_idx;
    uint3 block_idx;
    dim3 block_dim;
    dim3 grid_dim;
};

// Operation codes shared by both sides.
enum keel_emu_barrier_op { KEEL_EMU_BAR_SYNC = 0, KEEL_EMU_BAR_COUNT = 1, KEEL_EMU_BAR_AND = 2, KEEL_EMU_BAR_OR = 3 };
enum keel_emu_shfl_mode { KEEL_EMU_SHFL_IDX = 0, KEEL_EMU_SHFL_UP = 1, KEEL_EMU_SHFL_DOWN = 2, KEEL_EMU_SHFL_XOR = 3 };
enum keel_emu_vote_mode { KEEL_EMU_VOTE_BALLOT = 0, KEEL_EMU_VOTE_ANY = 1, KEEL_EMU_VOTE_ALL = 2, KEEL_EMU_VOTE_SYNC = 3 };

extern "C" {
// The calling CUDA thread. Constant for the whole life of a thread, hence `const` for the optimizer:
// a kernel function only ever runs inside one fiber, so the result cannot change under it.
const keel_emu_thread_info* keel_emu_rt_thread(void) __attribute__((const));

int keel_emu_rt_barrier(int op, int predicate, const char* file, int line);
uint64_t keel_emu_rt_shfl(int mode, unsigned mask, uint64_t bits, int operand, int width, const char* what,
                          const char* file, int line);
unsigned keel_emu_rt_vote(int mode, unsigned mask, int predicate, const char* what, const char* file, int line);
unsigned keel_emu_rt_activemask(void);

void keel_emu_rt_mma_m16n8k16_bf16(float* d, const unsigned* a, const unsigned* b, const float* c,
                                   const char* file, int line);
void keel_emu_rt_ldmatrix(unsigned* out, int count, int trans, const void* row_address, const char* file,
                          int line);
void keel_emu_rt_cp_async_16(void* shared_dst, const void* global_src, int src_bytes, const char* file,
                             int line);
void keel_emu_rt_cp_async_commit(void);
void keel_emu_rt_cp_async_wait(int pending_groups, const char* file, int line);
void* keel_emu_rt_dynamic_shared(void);

[[noreturn]] void keel_emu_rt_trap(const char* what, const char* file, int line, const char* function);
[[noreturn]] void keel_emu_rt_misaligned(const void* address, unsigned bytes, const char* file, int line);
}

#endif  // KEEL_EMU_BRIDGE_H
