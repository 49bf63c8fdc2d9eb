// runtime.h — internal state of the emulation runtime: launches, workers, blocks, fibers.
//
// A launch hands out blocks to workers (the calling thread plus pool threads). A worker runs one block at
// a time: each CUDA thread of the block is a fiber on that worker's OS thread, and fibers switch directly
// to one another (no trip through a scheduler) whenever one waits at a barrier or warp collective or
// exits. The worker's own stack is re-entered only when nothing in the block can run: the block is done,
// deadlocked, or aborted by an error.
#ifndef KEEL_EMU_RUNTIME_H
#define KEEL_EMU_RUNTIME_H

#include <pthread.h>
#include <setjmp.h>
#include <stdint.h>

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "../keel_emu_api.h"
#include "../keel_emu_bridge.h"
#include "checks.h"
#include "fiber.h"
#include "memory.h"

namespace keel_emu::rt {

constexpr unsigned kWarpSize = 32;
constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr unsigned kMaxWarps = kMaxThreadsPerBlock / kWarpSize;
constexpr size_t kDefaultStackBytes = 64 * 1024;

struct Site {
    const char* file = nullptr;
    int line = 0;
};

enum class FiberState : uint8_t { Idle, Ready, Running, Waiting, Exited };
enum class WaitKind : uint8_t { None, Barrier, Collective };

// A cp.async copy whose source was read at issue and whose destination is written when its group retires.
struct PendingCopy {
    unsigned char* destination;
    unsigned char bytes[16];
    Site site;             // where it was issued, for reports
    const void* pc;        // the kernel's return address at the issue
};

struct Worker;

struct Fiber {
    keel_emu_thread_info info{};
    Context context;
    Stack stack;
    Worker* worker = nullptr;
    unsigned linear = 0, warp = 0, lane = 0;
    FiberState state = FiberState::Idle;

    // Where it waits (for reports) and what it brought to the barrier or collective.
    WaitKind wait = WaitKind::None;
    const char* wait_what = nullptr;
    Site wait_site;
    unsigned wait_mask = 0;
    uint64_t operand_bits = 0;
    int operand = 0;
    int width = 0;
    const void* inputs[3] = {nullptr, nullptr, nullptr};
    void* output = nullptr;
    uint64_t result = 0;

    std::vector<PendingCopy> copies;  // issued, not yet retired, in issue order
    std::vector<size_t> group_ends;   // committed groups: index into `copies` one past each group's end

    // Spin detection (KEEL_EMU_CHECK_SPIN): the memory this thread polls and how often it has read the same value.
    const void* poll_address = nullptr;
    uint64_t poll_value = 0;
    uint32_t poll_count = 0;
    bool spinning = false;  // yielded from a spin and has not seen the value change since
    const void* spin_pc = nullptr;
    const void* call_pc = nullptr;  // return address of the runtime call in progress (ldmatrix rows, for reports)
};

// One warp collective that some lanes have reached and others not yet.
struct Collective {
    const char* what = nullptr;  // the intrinsic's name; lanes must call the same one
    int mode = 0;                // shuffle mode, vote mode, ldmatrix shape: must match too
    unsigned mask = 0;
    unsigned arrived = 0;
    Site site;                   // where the first lane called it
};

struct WarpState {
    unsigned existing = 0;  // lanes that exist (the last warp of a block may be partial)
    unsigned exited = 0;
    unsigned blocked = 0;     // lanes waiting at a barrier or a collective
    unsigned converging = 0;  // lanes waiting in __activemask (see keel_emu_rt_activemask)
    Collective pending[kWarpSize];
    unsigned pending_count = 0;
};

struct Launch;

// The block a worker is running.
struct Block {
    Launch* launch = nullptr;
    uint3 index{};
    unsigned thread_count = 0;
    unsigned warp_count = 0;
    Fiber** fibers = nullptr;  // the worker's fibers, thread_count of them in use

    std::vector<Fiber*> ready;  // ring buffer of fibers that can run
    unsigned ready_head = 0, ready_count = 0;
    unsigned next_unstarted = 0;
    unsigned exited = 0;

    // The block-wide barrier.
    unsigned barrier_arrived = 0;
    int barrier_op = 0;
    Site barrier_site;
    bool barrier_mismatch = false;
    int barrier_value = 0;
    std::vector<Fiber*> barrier_waiters;

    WarpState warps[kMaxWarps];
    void* dynamic_shared = nullptr;
    bool aborted = false;

    // KEEL_EMU_CHECK_ORDER: the block's random stream, and the order its threads start in.
    uint64_t random = 0;
    std::vector<Fiber*> start_order;
};

struct Fault {
    int signal = 0;
    int code = 0;
    uintptr_t address = 0;
    uintptr_t pc = 0;
};

struct Worker {
    pthread_t thread{};
    Context scheduler;     // the worker's own stack, suspended while fibers run
    Fiber* current = nullptr;
    std::vector<Fiber*> fibers;
    size_t stack_bytes = 0;  // of every fiber in `fibers`
    Block block;
    GuardedRegion dynamic_shared;
    std::vector<unsigned char> dynamic_shared_plain;  // when bounds checking is off

    sigjmp_buf fault_jump;
    std::atomic<bool> running{false};  // inside a launch: faults on this thread are the kernel's
    Fault fault;

    CheckState checks;  // shadow state of the checking modes (checks.h)
    std::atomic<bool> in_block{false};          // running a block of the current launch
    std::atomic<int64_t> stalled_since{0};      // steady-clock ns since which every thread of its block spins; 0 = not
    std::atomic<int64_t> last_stuck_check{0};   // when a spinning thread of its block last polled, in that state
};

struct Launch {
    const char* name = nullptr;
    void (*entry)(void**) = nullptr;
    void** args = nullptr;
    dim3 grid, block;
    size_t dynamic_shared_bytes = 0;
    bool bounds_checking = false;
    size_t stack_bytes = kDefaultStackBytes;
    unsigned thread_count = 0;
    uint64_t block_count = 0;
    uint32_t checks = 0;  // keel_emu_check bits
    uint64_t seed = 0;
    BlockOrder order;     // linear block index of the i-th block handed out
    std::vector<Worker*> workers;  // the workers of this launch
    std::vector<TrackedAllocation> tracked;  // KEEL_EMU_CHECK_INIT: the tracked allocations, sorted

    std::atomic<uint64_t> next_block{0};
    std::atomic<bool> failed{false};
    std::mutex error_mutex;
    int error_code = KEEL_EMU_OK;
    std::string error_message;

    // Records the launch's first error; later ones are dropped (they are usually its consequences).
    void fail(int code, std::string message);
};

// The worker whose fibers run on this OS thread (null outside launches).
Worker* current_worker();
void set_current_worker(Worker* worker);

// Scheduler (scheduler.cpp).
void yield(Fiber* self);  // lets the other runnable threads of the block run, then continues
uint64_t next_random(Block& block);  // the block's KEEL_EMU_CHECK_ORDER stream
bool worker_prepare(Worker& worker, const Launch& launch);  // fibers, stacks, shared buffer for `launch`
void run_block(Worker& worker, Launch& launch, uint64_t linear_block);
void switch_away(Fiber* self);  // from a fiber that waits or has exited, to the next runnable fiber
void make_ready(Block& block, Fiber* fiber);
void block_and_switch(Fiber* self);  // marks self waiting (wait fields set by the caller) and switches away
void check_convergence(Block& block, unsigned warp);
[[noreturn]] void fail_in_fiber(Fiber* self, int code, std::string message);
std::string describe_thread(const Fiber* fiber);  // "kernel 'k', block (1,0,0), thread (5,0,0)"
std::string describe_site(const char* what, Site site);  // "__syncthreads (file.cu:12)"
std::string thread_ranges(const std::vector<unsigned>& ids);  // "0-127, 130"

// Faults (faults.cpp).
void install_fault_handlers();
void register_worker(Worker* worker);
std::string describe_fault(const Worker& worker, int* code);
void ensure_alternate_signal_stack();

}  // namespace keel_emu::rt

#endif  // KEEL_EMU_RUNTIME_H
