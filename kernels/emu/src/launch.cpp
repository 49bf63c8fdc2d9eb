// launch.cpp — the C ABI: allocation, launch validation, the worker pool.
//
// The calling thread is itself a worker (a launch of one block never wakes another thread); pool threads
// are created on demand, kept for the life of the process, and sleep between launches. Launches are
// serialized: the workers, their fibers and shared buffers belong to one launch at a time.
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <condition_variable>
#include <memory>
#include <thread>

#include "runtime.h"

namespace keel_emu::rt {
namespace {

constexpr unsigned kMaxWorkers = 256;
constexpr size_t kMaxDynamicSharedBytes = 227 * 1024;  // the largest opt-in of any current GPU (sm_90)
constexpr size_t kMinStackBytes = 16 * 1024;
constexpr size_t kMaxStackBytes = 64ull * 1024 * 1024;
constexpr uint32_t kOptionsSizeBeforeChecks = 24;  // keel_emu_options without checks and seed

unsigned online_cores() {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        const int count = CPU_COUNT(&set);
        if (count > 0) return static_cast<unsigned>(count);
    }
    const unsigned count = std::thread::hardware_concurrency();
    return count == 0 ? 1 : count;
}

// Runs blocks of `launch` until none are left or the launch has failed.
void work(Worker& worker, Launch& launch) {
    set_current_worker(&worker);
    ensure_alternate_signal_stack();
    worker.thread = pthread_self();
    if (!worker_prepare(worker, launch)) {
        launch.fail(KEEL_EMU_ERROR_OUT_OF_MEMORY,
                    "kernel '" + std::string(launch.name) + "': could not map " + std::to_string(launch.thread_count) +
                        " fiber stacks of " + std::to_string(launch.stack_bytes) +
                        " bytes and the dynamic shared buffer.");
        set_current_worker(nullptr);
        return;
    }
    if (sigsetjmp(worker.fault_jump, 1) != 0) {
        // A fault in a fiber (or in the runtime on its behalf) brought us back here.
        worker.running.store(false, std::memory_order_release);
        worker.in_block.store(false, std::memory_order_release);
        worker.stalled_since.store(0, std::memory_order_release);
        checks_end_launch(worker);
        int code = KEEL_EMU_ERROR_MEMORY_FAULT;
        std::string message = describe_fault(worker, &code);
        launch.fail(code, std::move(message));
        worker.current = nullptr;
        set_current_worker(nullptr);
        return;
    }
    checks_begin_launch(worker, launch);
    worker.running.store(true, std::memory_order_release);
    while (!launch.failed.load(std::memory_order_relaxed)) {
        const uint64_t next = launch.next_block.fetch_add(1, std::memory_order_relaxed);
        if (next >= launch.block_count) break;
        worker.in_block.store(true, std::memory_order_release);
        run_block(worker, launch, launch.order.at(next));
        worker.in_block.store(false, std::memory_order_release);
        worker.stalled_since.store(0, std::memory_order_release);
    }
    worker.running.store(false, std::memory_order_release);
    checks_end_launch(worker);
    set_current_worker(nullptr);
}

class Pool {
public:
    // Runs `launch` on the calling thread plus `helpers` pool threads; returns when all are done.
    void run(Launch& launch, unsigned helpers) {
        while (threads_.size() < helpers) {
            auto worker = std::make_unique<Worker>();
            register_worker(worker.get());
            const unsigned index = static_cast<unsigned>(threads_.size());
            Worker* raw = worker.get();
            workers_.push_back(std::move(worker));
            uint64_t generation;
            {
                std::lock_guard<std::mutex> lock(mutex_);
                generation = generation_;
            }
            threads_.emplace_back([this, raw, index, generation] { serve(*raw, index, generation); });
            threads_.back().detach();  // lives as long as the process; never joined at exit
        }
        launch.workers.assign(1, &caller_);
        for (unsigned i = 0; i < helpers; ++i) launch.workers.push_back(workers_[i].get());
        if (helpers != 0) {
            std::lock_guard<std::mutex> lock(mutex_);
            launch_ = &launch;
            participants_ = helpers;
            running_ = helpers;
            ++generation_;
            wake_.notify_all();
        }
        work(caller_, launch);
        if (helpers != 0) {
            std::unique_lock<std::mutex> lock(mutex_);
            done_.wait(lock, [this] { return running_ == 0; });
            launch_ = nullptr;
        }
    }

    Pool() { register_worker(&caller_); }

private:
    void serve(Worker& worker, unsigned index, uint64_t seen) {
        for (;;) {
            Launch* launch;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] { return generation_ != seen; });
                seen = generation_;
                if (index >= participants_) continue;
                launch = launch_;
            }
            work(worker, *launch);
            std::lock_guard<std::mutex> lock(mutex_);
            if (--running_ == 0) done_.notify_all();
        }
    }

    Worker caller_;
    std::vector<std::unique_ptr<Worker>> workers_;
    std::vector<std::thread> threads_;
    std::mutex mutex_;
    std::condition_variable wake_, done_;
    uint64_t generation_ = 0;
    unsigned participants_ = 0;
    unsigned running_ = 0;
    Launch* launch_ = nullptr;
};

Pool& pool() {
    static Pool* instance = new Pool();  // never destroyed: detached threads may still wait on it at exit
    return *instance;
}

std::mutex& launch_mutex() {
    static std::mutex* mutex = new std::mutex();
    return *mutex;
}

int32_t reject(char* error, size_t capacity, int32_t code, const std::string& message) {
    if (error != nullptr && capacity != 0) {
        const size_t n = message.size() < capacity - 1 ? message.size() : capacity - 1;
        memcpy(error, message.data(), n);
        error[n] = '\0';
    }
    return code;
}

std::string dims(keel_emu_dim3 d) {
    return "(" + std::to_string(d.x) + "," + std::to_string(d.y) + "," + std::to_string(d.z) + ")";
}

// Empty when the launch is valid, else the reason.
std::string validate(const char* name, void (*entry)(void**), keel_emu_dim3 grid, keel_emu_dim3 block,
                     size_t dynamic_shared_bytes, const keel_emu_options* options) {
    const std::string kernel = "kernel '" + std::string(name) + "': ";
    if (entry == nullptr) return kernel + "the entry function is null.";
    if (block.x == 0 || block.y == 0 || block.z == 0) return kernel + "block " + dims(block) + " has a zero dimension.";
    if (grid.x == 0 || grid.y == 0 || grid.z == 0) return kernel + "grid " + dims(grid) + " has a zero dimension.";
    if (block.x > 1024 || block.y > 1024 || block.z > 64)
        return kernel + "block " + dims(block) + " exceeds the per-dimension limits (1024, 1024, 64).";
    const uint64_t threads = static_cast<uint64_t>(block.x) * block.y * block.z;
    if (threads > kMaxThreadsPerBlock)
        return kernel + "block " + dims(block) + " has " + std::to_string(threads) + " threads; the limit is 1024.";
    if (grid.x > 2147483647u || grid.y > 65535u || grid.z > 65535u)
        return kernel + "grid " + dims(grid) + " exceeds the limits (2147483647, 65535, 65535).";
    if (dynamic_shared_bytes > kMaxDynamicSharedBytes)
        return kernel + std::to_string(dynamic_shared_bytes) + " bytes of dynamic shared memory exceed the limit of " +
               std::to_string(kMaxDynamicSharedBytes) + ".";
    if (options != nullptr) {
        if (options->size != sizeof(keel_emu_options) && options->size != kOptionsSizeBeforeChecks)
            return kernel + "keel_emu_options.size is " + std::to_string(options->size) + ", expected " +
                   std::to_string(sizeof(keel_emu_options)) + " (header and library disagree).";
        if (options->size >= sizeof(keel_emu_options)) {
            if (options->reserved2 != 0) return kernel + "keel_emu_options.reserved2 must be 0.";
            if ((options->checks & ~uint32_t{KEEL_EMU_CHECKS_ALL}) != 0)
                return kernel + "keel_emu_options.checks has unknown bits " +
                       std::to_string(options->checks & ~uint32_t{KEEL_EMU_CHECKS_ALL}) + ".";
        }
        if (options->worker_threads < 0 || options->worker_threads > static_cast<int32_t>(kMaxWorkers))
            return kernel + "worker_threads " + std::to_string(options->worker_threads) + " is outside 0.." +
                   std::to_string(kMaxWorkers) + ".";
        if (options->reserved != 0) return kernel + "keel_emu_options.reserved must be 0.";
        if (options->fiber_stack_bytes != 0 &&
            (options->fiber_stack_bytes < kMinStackBytes || options->fiber_stack_bytes > kMaxStackBytes))
            return kernel + "fiber_stack_bytes " + std::to_string(options->fiber_stack_bytes) + " is outside " +
                   std::to_string(kMinStackBytes) + ".." + std::to_string(kMaxStackBytes) + ".";
    }
    return std::string();
}

}  // namespace
}  // namespace keel_emu::rt

using namespace keel_emu::rt;

extern "C" KEEL_EMU_API void* keel_emu_alloc(size_t bytes, int32_t guarded) {
    return registry_allocate(bytes, guarded != 0, false, false);
}

extern "C" KEEL_EMU_API void* keel_emu_alloc_flags(size_t bytes, uint32_t flags) {
    return registry_allocate(bytes, (flags & KEEL_EMU_ALLOC_GUARDED) != 0, (flags & KEEL_EMU_ALLOC_POISON) != 0,
                             (flags & KEEL_EMU_ALLOC_TRACK_INIT) != 0);
}

extern "C" KEEL_EMU_API void keel_emu_mark_written(const void* p, size_t bytes) { registry_mark_written(p, bytes); }

extern "C" KEEL_EMU_API void keel_emu_free(void* p) { registry_free(p); }

extern "C" KEEL_EMU_API int32_t keel_emu_launch(const char* kernel_name, void (*entry)(void** args), void** args,
                                                keel_emu_dim3 grid, keel_emu_dim3 block, size_t dynamic_shared_bytes,
                                                const keel_emu_options* options, char* error, size_t error_capacity) {
    const char* name = kernel_name != nullptr ? kernel_name : "(unnamed)";
    if (error != nullptr && error_capacity != 0) error[0] = '\0';
    std::string problem = validate(name, entry, grid, block, dynamic_shared_bytes, options);
    if (!problem.empty()) return reject(error, error_capacity, KEEL_EMU_ERROR_INVALID_LAUNCH, problem);
    if (current_worker() != nullptr)
        return reject(error, error_capacity, KEEL_EMU_ERROR_INVALID_LAUNCH,
                      "kernel '" + std::string(name) + "': keel_emu_launch was called from inside a kernel.");

    Launch launch;
    launch.name = name;
    launch.entry = entry;
    launch.args = args;
    launch.grid = dim3(grid.x, grid.y, grid.z);
    launch.block = dim3(block.x, block.y, block.z);
    launch.dynamic_shared_bytes = dynamic_shared_bytes;
    launch.bounds_checking = options != nullptr && options->bounds_checking != 0;
    if (options != nullptr && options->fiber_stack_bytes != 0) launch.stack_bytes = options->fiber_stack_bytes;
    launch.thread_count = block.x * block.y * block.z;
    launch.block_count = static_cast<uint64_t>(grid.x) * grid.y * grid.z;
    if (options != nullptr && options->size >= sizeof(keel_emu_options)) {
        launch.checks = options->checks;
        launch.seed = options->seed;
    }
    launch.order.init(launch.block_count, launch.seed, (launch.checks & KEEL_EMU_CHECK_ORDER) != 0);
    problem = checks_validate(launch);
    if (!problem.empty()) return reject(error, error_capacity, KEEL_EMU_ERROR_INVALID_LAUNCH, problem);
    if (launch.checks & KEEL_EMU_CHECK_INIT) launch.tracked = tracked_snapshot();
    unsigned workers = options != nullptr && options->worker_threads > 0 ? static_cast<unsigned>(options->worker_threads)
                                                                         : online_cores();
    if (workers > kMaxWorkers) workers = kMaxWorkers;
    if (workers > launch.block_count) workers = static_cast<unsigned>(launch.block_count);

    install_fault_handlers();
    {
        std::lock_guard<std::mutex> lock(launch_mutex());
        pool().run(launch, workers - 1);
    }
    if (launch.error_code == KEEL_EMU_OK) return KEEL_EMU_OK;
    return reject(error, error_capacity, launch.error_code, launch.error_message);
}

extern "C" KEEL_EMU_API const char* keel_emu_status_name(int32_t status) {
    switch (status) {
        case KEEL_EMU_OK: return "KEEL_EMU_OK";
        case KEEL_EMU_ERROR_INVALID_LAUNCH: return "KEEL_EMU_ERROR_INVALID_LAUNCH";
        case KEEL_EMU_ERROR_BARRIER: return "KEEL_EMU_ERROR_BARRIER";
        case KEEL_EMU_ERROR_WARP_COLLECTIVE: return "KEEL_EMU_ERROR_WARP_COLLECTIVE";
        case KEEL_EMU_ERROR_MEMORY_FAULT: return "KEEL_EMU_ERROR_MEMORY_FAULT";
        case KEEL_EMU_ERROR_BOUNDS_TRAP: return "KEEL_EMU_ERROR_BOUNDS_TRAP";
        case KEEL_EMU_ERROR_TRAP: return "KEEL_EMU_ERROR_TRAP";
        case KEEL_EMU_ERROR_ARITHMETIC: return "KEEL_EMU_ERROR_ARITHMETIC";
        case KEEL_EMU_ERROR_OUT_OF_MEMORY: return "KEEL_EMU_ERROR_OUT_OF_MEMORY";
        case KEEL_EMU_ERROR_MISUSE: return "KEEL_EMU_ERROR_MISUSE";
        case KEEL_EMU_ERROR_RACE: return "KEEL_EMU_ERROR_RACE";
        case KEEL_EMU_ERROR_UNINITIALIZED: return "KEEL_EMU_ERROR_UNINITIALIZED";
        case KEEL_EMU_ERROR_SPIN: return "KEEL_EMU_ERROR_SPIN";
        case KEEL_EMU_ERROR_MISALIGNED: return "KEEL_EMU_ERROR_MISALIGNED";
        default: return "unknown";
    }
}
