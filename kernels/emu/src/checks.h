// checks.h — the checking modes (keel_emu_options.checks; README.md "Checking modes").
//
// ORDER changes only the scheduler (scheduler.cpp, launch.cpp). RACE, INIT and SPIN watch every load and store of
// the kernel: kernels for them are compiled with g++'s ThreadSanitizer instrumentation (-fsanitize=thread), which
// calls __tsan_read4(address) before every 4-byte load and so on, and this runtime defines those hooks itself
// (checks.cpp) instead of linking libtsan. A hook classifies the address: the block's static shared memory (the
// kernel object's thread-local block, since __shared__ is `static thread_local`), its dynamic shared memory, a
// tracked global allocation, or anything else (stacks, ignored). Shared memory has a shadow cell per 2 bytes:
//   - who wrote and who read it in the current barrier interval, for races (RACE);
//   - whether this block wrote it at all, for uninitialized reads (INIT);
//   - whether a cp.async of this block is still copying into it (RACE: any access before the wait is reported).
// Intervals and blocks are numbered (epoch, generation) per worker, so nothing is cleared between them.
#ifndef KEEL_EMU_CHECKS_H
#define KEEL_EMU_CHECKS_H

#include <stddef.h>
#include <stdint.h>

#include <string>
#include <vector>

namespace keel_emu::rt {

struct Fiber;
struct Launch;
struct Worker;
struct Block;

constexpr size_t kShadowGranule = 2;  // bytes per shadow cell: bf16 halves of one word are separate locations
constexpr unsigned kSyncRing = 64;    // warp collectives remembered per warp for same-warp ordering

struct ShadowCell {
    uint32_t epoch = 0;        // barrier interval the access fields below belong to
    uint32_t written = 0;      // block generation in which the cell was last written (INIT)
    uint32_t pending = 0;      // block generation of the cp.async still copying into it (with pending_thread)
    uint16_t pending_thread = 0;  // thread + 1
    uint16_t writer = 0, reader = 0, reader2 = 0;  // thread + 1 (0: none) in `epoch`; reader2 another reader
    uint8_t atomic = 0;        // bit 0: writer, 1: reader, 2: reader2 accessed it atomically
    uint32_t writer_stamp = 0, reader_stamp = 0, reader2_stamp = 0;  // the warp's collective count at the access
    const void* writer_pc = nullptr;
    const void* reader_pc = nullptr;
    const void* reader2_pc = nullptr;
};

// A global allocation whose bytes carry a written bit (KEEL_EMU_ALLOC_TRACK_INIT).
struct TrackedAllocation {
    uintptr_t start = 0;
    size_t bytes = 0;
    uint8_t* written = nullptr;  // a bit per byte
};

// Per worker: what the hooks need, reachable from the worker alone.
struct CheckState {
    uint32_t flags = 0;  // the launch's checks while this worker runs it, else 0
    uintptr_t static_start = 0;
    size_t static_bytes = 0;
    uintptr_t dynamic_start = 0;
    size_t dynamic_bytes = 0;
    std::vector<ShadowCell> static_cells, dynamic_cells;
    uint32_t epoch = 0, generation = 0;
    uint32_t sync_count[32] = {};          // completed collectives per warp
    unsigned sync_masks[32][kSyncRing] = {};  // their masks, by count % kSyncRing
    const std::vector<TrackedAllocation>* tracked = nullptr;  // the launch's snapshot, sorted by start
    size_t last_tracked = 0;  // index of the last hit
};

// A seeded bijection of [0, n): a four-round Feistel network on the smallest even number of bits holding n, with
// cycle walking; no memory, whatever the grid.
struct BlockOrder {
    uint64_t count = 0;
    unsigned half_bits = 0;
    uint64_t keys[4] = {};
    bool identity = true;
    void init(uint64_t n, uint64_t seed, bool shuffle);
    uint64_t at(uint64_t i) const;
};

uint64_t mix64(uint64_t x);  // SplitMix64's finalizer

// Launch and block boundaries.
std::string checks_validate(const Launch& launch);  // empty, or why the launch cannot be checked as asked
void checks_begin_launch(Worker& worker, Launch& launch);
void checks_end_launch(Worker& worker);
void checks_begin_block(Worker& worker);
void checks_barrier(Worker& worker);                                  // a __syncthreads completed
void checks_collective(Worker& worker, unsigned warp, unsigned mask);  // a warp collective completed

// Runtime-side accesses (cp.async, ldmatrix) that the instrumentation cannot see.
// `pc`: the return address of the kernel's call, for the source line in reports.
void checks_cp_async_issue(Fiber* self, unsigned char* destination, const void* source, int source_bytes,
                           const void* pc);
void checks_cp_async_retire(Fiber* self, unsigned char* destination, const void* pc);
void checks_shared_read(Fiber* reader, const void* address, size_t bytes, const void* pc);

// Global allocations (memory.cpp keeps them; the snapshot is taken for a launch under INIT).
std::vector<TrackedAllocation> tracked_snapshot();

// "attention.cu:312, inlined at ..." for a return address in a kernel object (addr2line), else "lib.so+0x..".
std::string source_of(const void* pc);

}  // namespace keel_emu::rt

#endif  // KEEL_EMU_CHECKS_H
