/*
 * keel_emu_api.h — the C ABI of libkeel_emu.so, the CPU emulation runtime that executes the project's
 * CUDA C++ kernels (kernels/NAME.cu) on the host. Consumed from .NET through P/Invoke: every type here is
 * blittable, every function is extern "C", nothing is allocated for the caller except by keel_emu_alloc.
 *
 * How a kernel gets here: the kernel source is compiled by g++ into a shared object together with one
 * KEEL_EMU_ENTRY(NAME) line per entry point (see keel_emu.h and README.md for the exact command). That
 * object exports, for each entry point NAME:
 *   void keel_emu_entry_NAME(void** args);                     -- pass to keel_emu_launch as `entry`
 *   const keel_emu_signature* keel_emu_signature_NAME(void);   -- parameter count, sizes and kinds
 *
 * Stability: this header is the whole public contract. Fields are only ever added at the end of
 * keel_emu_options, guarded by its `size` field.
 */
#ifndef KEEL_EMU_API_H
#define KEEL_EMU_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(KEEL_EMU_BUILDING_RUNTIME)
#define KEEL_EMU_API __attribute__((visibility("default")))
#else
#define KEEL_EMU_API
#endif

/* Result codes of keel_emu_launch. 0 is success; every other code comes with a message. */
enum keel_emu_status {
    KEEL_EMU_OK = 0,
    KEEL_EMU_ERROR_INVALID_LAUNCH = 1,   /* bad shape, options or arguments; nothing ran */
    KEEL_EMU_ERROR_BARRIER = 2,          /* __syncthreads not reached by every thread, or at different places */
    KEEL_EMU_ERROR_WARP_COLLECTIVE = 3,  /* bad mask, mismatched masks, lanes missing from a warp collective */
    KEEL_EMU_ERROR_MEMORY_FAULT = 4,     /* access to a guard page or unmapped memory, fiber stack overflow */
    KEEL_EMU_ERROR_BOUNDS_TRAP = 5,      /* out-of-bounds array index caught by -fsanitize=bounds (SIGILL) */
    KEEL_EMU_ERROR_TRAP = 6,             /* assert() failed or __trap() called in the kernel */
    KEEL_EMU_ERROR_ARITHMETIC = 7,       /* SIGFPE: integer division by zero or overflow */
    KEEL_EMU_ERROR_OUT_OF_MEMORY = 8,    /* the runtime could not map fiber stacks or shared buffers */
    KEEL_EMU_ERROR_MISUSE = 9,           /* invalid use of an intrinsic (bad width, misaligned cp.async, ...) */
    KEEL_EMU_ERROR_RACE = 10,            /* shared-memory race, or a read of a cp.async destination before its wait */
    KEEL_EMU_ERROR_UNINITIALIZED = 11,   /* a read of shared or global bytes nothing has written */
    KEEL_EMU_ERROR_SPIN = 12,            /* a spin-wait that no running block can end (on a GPU: a hang) */
    KEEL_EMU_ERROR_MISALIGNED = 13       /* an access not aligned to its size (on a GPU: misaligned address) */
};

/* Checking modes, the bits of keel_emu_options.checks (README.md, "Checking modes"). RACE, INIT and SPIN watch
 * every memory access, so they need kernels compiled with the instrumentation flags (KEEL_EMU_CHECKS_INSTRUMENTED);
 * a launch that asks for them on a kernel compiled without is refused. */
enum keel_emu_check {
    KEEL_EMU_CHECK_ORDER = 1,  /* seeded order of blocks, of warps in a block and of lanes in a warp between barriers */
    KEEL_EMU_CHECK_RACE = 2,   /* shared-memory races; accesses to cp.async destinations before their wait */
    KEEL_EMU_CHECK_ASYNC = 4,  /* cp.async destinations hold poison (0xff bytes) from issue until their wait */
    KEEL_EMU_CHECK_INIT = 8,   /* shared memory poisoned at block start; reads of never-written shared or tracked global bytes */
    KEEL_EMU_CHECK_SPIN = 16   /* spin-waits on memory that no running block can end are reported, not hung on */
};
#define KEEL_EMU_CHECKS_INSTRUMENTED (KEEL_EMU_CHECK_RACE | KEEL_EMU_CHECK_INIT | KEEL_EMU_CHECK_SPIN)
#define KEEL_EMU_CHECKS_ALL \
    (KEEL_EMU_CHECK_ORDER | KEEL_EMU_CHECK_RACE | KEEL_EMU_CHECK_ASYNC | KEEL_EMU_CHECK_INIT | KEEL_EMU_CHECK_SPIN)

/* Flags of keel_emu_alloc_flags. */
enum keel_emu_alloc_flag {
    KEEL_EMU_ALLOC_GUARDED = 1,     /* the end abuts a PROT_NONE page (see keel_emu_alloc) */
    KEEL_EMU_ALLOC_POISON = 2,      /* filled with 0xff bytes (NaN as fp32 and bf16, -1 as integers) instead of zeros */
    KEEL_EMU_ALLOC_TRACK_INIT = 4   /* keeps a bit per byte: written or not (KEEL_EMU_CHECK_INIT reports reads of unwritten bytes) */
};

typedef struct keel_emu_dim3 {
    uint32_t x, y, z;
} keel_emu_dim3;

/* Launch options. Pass NULL for defaults. `size` is sizeof(keel_emu_options) of the caller's header: 40, or 24
 * for callers from before `checks` and `seed` (which then default to 0). */
typedef struct keel_emu_options {
    uint32_t size;               /* sizeof(keel_emu_options), for forward compatibility */
    int32_t worker_threads;      /* OS threads running blocks; 0 = one per online core */
    int32_t bounds_checking;     /* nonzero: dynamic shared memory ends at a guard page (see README) */
    uint32_t reserved;           /* must be 0 */
    uint64_t fiber_stack_bytes;  /* stack of each emulated CUDA thread; 0 = default (64 KiB) */
    uint32_t checks;             /* keel_emu_check bits; 0 = none */
    uint32_t reserved2;          /* must be 0 */
    uint64_t seed;               /* KEEL_EMU_CHECK_ORDER: the schedule; the same seed gives the same order */
} keel_emu_options;

/* How a kernel parameter is passed: the category of its C++ type (cv-qualifiers ignored). */
enum keel_emu_parameter_kind {
    KEEL_EMU_PARAMETER_POINTER = 1,           /* any pointer: a device address */
    KEEL_EMU_PARAMETER_SIGNED_INTEGER = 2,
    KEEL_EMU_PARAMETER_UNSIGNED_INTEGER = 3,  /* bool included */
    KEEL_EMU_PARAMETER_FLOAT = 4,
    KEEL_EMU_PARAMETER_OTHER = 5              /* a struct or enum by value */
};

/* What keel_emu_signature_NAME() returns: the kernel's parameters as the compiler sees them, so that a caller can
 * check its argument list (count, sizes, kinds) before it launches. Fields are only ever added at the end. */
typedef struct keel_emu_signature {
    uint32_t parameter_count;
    uint32_t reserved;
    const uint32_t* parameter_sizes;       /* parameter_count entries, bytes */
    const uint32_t* parameter_alignments;  /* parameter_count entries, bytes */
    const uint32_t* parameter_kinds;       /* parameter_count entries, keel_emu_parameter_kind */
} keel_emu_signature;

/* Allocates `bytes` of host memory for kernel buffers ("global memory"); zero-filled.
 * Unguarded: 64-byte aligned. Guarded (guarded != 0): the end of the allocation, rounded up to 16 bytes,
 * abuts a PROT_NONE page, so any access past it faults and is reported by keel_emu_launch; the start is
 * therefore aligned to the largest power of two (at most 64, at least 16) dividing that rounded size.
 * Returns NULL when out of memory. Every allocation is registered so a fault can name the nearest one. */
KEEL_EMU_API void* keel_emu_alloc(size_t bytes, int32_t guarded);

/* keel_emu_alloc with keel_emu_alloc_flag bits: guarded, poisoned (0xff bytes instead of zeros), tracked (a
 * written bit per byte, set by kernel stores and by keel_emu_mark_written). */
KEEL_EMU_API void* keel_emu_alloc_flags(size_t bytes, uint32_t flags);

/* Records that the host wrote [p, p + bytes) of an allocation (copies, fills): KEEL_EMU_CHECK_INIT reports
 * reads of tracked bytes that neither the host nor a kernel wrote. Untracked and unknown memory is ignored. */
KEEL_EMU_API void keel_emu_mark_written(const void* p, size_t bytes);

/* Frees memory from keel_emu_alloc. NULL and unknown pointers are ignored. */
KEEL_EMU_API void keel_emu_free(void* p);

/* Runs kernel `entry` (a keel_emu_entry_NAME) over `grid` x `block` and returns when every block has
 * finished or the first error stopped the launch. `args` as in cuLaunchKernel: args[i] points at the
 * value of parameter i. `kernel_name` is used in messages only. On failure returns a keel_emu_status and
 * writes a one-paragraph message (NUL-terminated, truncated to error_capacity) naming the kernel, block
 * and threads involved. Launches from several host threads are serialized. The host process survives
 * every reported error; memory the kernel wrote before the error keeps what it wrote. */
KEEL_EMU_API int32_t keel_emu_launch(const char* kernel_name, void (*entry)(void** args), void** args,
                                     keel_emu_dim3 grid, keel_emu_dim3 block, size_t dynamic_shared_bytes,
                                     const keel_emu_options* options, char* error, size_t error_capacity);

/* A constant string naming a keel_emu_status ("KEEL_EMU_ERROR_BARRIER"), or "unknown". */
KEEL_EMU_API const char* keel_emu_status_name(int32_t status);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_EMU_API_H */
