// scheduler.cpp — running one block: fibers, the block-wide barrier, deadlock reports.
#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <map>

#include "runtime.h"

namespace keel_emu::rt {

void fiber_main(void* argument);

namespace {
thread_local Worker* tls_worker = nullptr;

Fiber* pick_next(Block& block) {
    if (block.ready_count != 0) {
        Fiber* fiber = block.ready[block.ready_head];
        if (++block.ready_head == block.thread_count) block.ready_head = 0;
        --block.ready_count;
        return fiber;
    }
    if (block.next_unstarted < block.thread_count) {
        const unsigned next = block.next_unstarted++;
        Fiber* fiber = block.start_order.empty() ? block.fibers[next] : block.start_order[next];
        context_prepare(&fiber->context, fiber->stack.base, fiber->stack.bytes, &fiber_main, fiber);
        return fiber;
    }
    return nullptr;
}

void retire_copies(Fiber* fiber, size_t count) {
    const bool checked = fiber->worker->checks.flags != 0;
    for (size_t i = 0; i < count; ++i) {
        memcpy(fiber->copies[i].destination, fiber->copies[i].bytes, 16);
        if (checked) checks_cp_async_retire(fiber, fiber->copies[i].destination, fiber->copies[i].pc);
    }
    fiber->copies.erase(fiber->copies.begin(), fiber->copies.begin() + static_cast<ptrdiff_t>(count));
}

// KEEL_EMU_CHECK_ORDER: every thread of the block into `order`, warps in a random order and each warp's lanes in a
// random order (two Fisher-Yates shuffles, no sort).
void shuffle_by_warp(Block& block, std::vector<Fiber*>& order) {
    unsigned warps[kMaxWarps], lanes[kWarpSize];
    for (unsigned w = 0; w < block.warp_count; ++w) warps[w] = w;
    for (unsigned l = 0; l < kWarpSize; ++l) lanes[l] = l;
    for (unsigned w = block.warp_count; w > 1; --w) std::swap(warps[w - 1], warps[next_random(block) % w]);
    for (unsigned l = kWarpSize; l > 1; --l) std::swap(lanes[l - 1], lanes[next_random(block) % l]);
    order.clear();
    for (unsigned w = 0; w < block.warp_count; ++w)
        for (unsigned l = 0; l < kWarpSize; ++l) {
            const unsigned thread = warps[w] * kWarpSize + lanes[l];
            if (thread < block.thread_count) order.push_back(block.fibers[thread]);
        }
}
}  // namespace

Worker* current_worker() { return tls_worker; }

uint64_t next_random(Block& block) {
    block.random += 0x9e3779b97f4a7c15ull;
    return mix64(block.random);
}
void set_current_worker(Worker* worker) { tls_worker = worker; }

void Launch::fail(int code, std::string message) {
    std::lock_guard<std::mutex> lock(error_mutex);
    if (error_code == KEEL_EMU_OK) {
        error_code = code;
        error_message = std::move(message);
    }
    failed.store(true, std::memory_order_relaxed);
}

// Entry of every fiber: runs the kernel for one CUDA thread, then leaves for good.
void fiber_main(void* argument) {
    auto* self = static_cast<Fiber*>(argument);
    Block& block = self->worker->block;
    block.launch->entry(block.launch->args);
    retire_copies(self, self->copies.size());  // the GPU completes outstanding cp.async at exit too
    self->group_ends.clear();
    self->state = FiberState::Exited;
    ++block.exited;
    block.warps[self->warp].exited |= 1u << self->lane;
    check_convergence(block, self->warp);
    switch_away(self);
    __builtin_unreachable();
}

void make_ready(Block& block, Fiber* fiber) {
    fiber->state = FiberState::Ready;
    fiber->wait = WaitKind::None;
    block.warps[fiber->warp].blocked &= ~(1u << fiber->lane);
    unsigned tail = block.ready_head + block.ready_count;
    if (tail >= block.thread_count) tail -= block.thread_count;
    block.ready[tail] = fiber;
    ++block.ready_count;
}

void block_and_switch(Fiber* self) {
    Block& block = self->worker->block;
    self->state = FiberState::Waiting;
    block.warps[self->warp].blocked |= 1u << self->lane;
    check_convergence(block, self->warp);
    switch_away(self);
}

void check_convergence(Block& block, unsigned warp_index) {
    WarpState& warp = block.warps[warp_index];
    if (warp.converging == 0 || (warp.converging | warp.exited | warp.blocked) != warp.existing) return;
    const unsigned converged = warp.converging;
    warp.converging = 0;
    Fiber* const self = block.fibers[0]->worker->current;
    for (unsigned l = 0; l < kWarpSize; ++l) {
        if ((converged & (1u << l)) == 0) continue;
        Fiber* fiber = block.fibers[warp_index * kWarpSize + l];
        fiber->result = converged;
        if (fiber != self) make_ready(block, fiber);
    }
}

void yield(Fiber* self) {
    Block& block = self->worker->block;
    Fiber* next = pick_next(block);  // a woken thread, else one not started yet
    if (next == nullptr) return;
    make_ready(block, self);
    next->state = FiberState::Running;
    self->worker->current = next;
    context_switch(&self->context, &next->context);
}

void switch_away(Fiber* self) {
    Worker* worker = self->worker;
    Fiber* next = pick_next(worker->block);
    if (next != nullptr) {
        next->state = FiberState::Running;
        worker->current = next;
        context_switch(&self->context, &next->context);
    } else {
        worker->current = nullptr;
        context_switch(&self->context, &worker->scheduler);
    }
}

void fail_in_fiber(Fiber* self, int code, std::string message) {
    Worker* worker = self->worker;
    worker->block.launch->fail(code, std::move(message));  // leaves `message` empty: nothing leaks below
    worker->block.aborted = true;
    worker->current = nullptr;
    context_switch(&self->context, &worker->scheduler);
    __builtin_unreachable();  // an aborted block's fibers are never resumed
}

bool worker_prepare(Worker& worker, const Launch& launch) {
    if (worker.stack_bytes != launch.stack_bytes) {
        for (Fiber* fiber : worker.fibers) {
            stack_unmap(&fiber->stack);
            delete fiber;
        }
        worker.fibers.clear();
        worker.stack_bytes = launch.stack_bytes;
    }
    while (worker.fibers.size() < launch.thread_count) {
        auto* fiber = new Fiber();
        fiber->worker = &worker;
        if (!stack_map(worker.stack_bytes, &fiber->stack)) {
            delete fiber;
            return false;
        }
        worker.fibers.push_back(fiber);
    }
    Block& block = worker.block;
    block.ready.resize(worker.fibers.size());
    block.barrier_waiters.reserve(worker.fibers.size());

    if (launch.bounds_checking) {
        if (worker.dynamic_shared.map == nullptr || worker.dynamic_shared.bytes != launch.dynamic_shared_bytes) {
            guarded_unmap(&worker.dynamic_shared);
            if (!guarded_map(launch.dynamic_shared_bytes, &worker.dynamic_shared)) return false;
        }
        block.dynamic_shared = worker.dynamic_shared.data;
    } else {
        // Like the GPU's, the buffer is at least 128-byte aligned (the vector's storage from operator new
        // is 16-aligned, so over-allocate and align up).
        worker.dynamic_shared_plain.resize(launch.dynamic_shared_bytes + 128);
        auto address = reinterpret_cast<uintptr_t>(worker.dynamic_shared_plain.data());
        block.dynamic_shared = reinterpret_cast<void*>((address + 127) & ~static_cast<uintptr_t>(127));
    }
    return true;
}

void run_block(Worker& worker, Launch& launch, uint64_t linear_block) {
    Block& block = worker.block;
    block.launch = &launch;
    const uint64_t gx = launch.grid.x, gy = launch.grid.y;
    block.index = uint3{static_cast<unsigned>(linear_block % gx), static_cast<unsigned>(linear_block / gx % gy),
                        static_cast<unsigned>(linear_block / (gx * gy))};
    block.thread_count = launch.thread_count;
    block.warp_count = (launch.thread_count + kWarpSize - 1) / kWarpSize;
    block.fibers = worker.fibers.data();
    block.ready_head = block.ready_count = 0;
    block.next_unstarted = 0;
    block.exited = 0;
    block.barrier_arrived = 0;
    block.barrier_waiters.clear();
    block.aborted = false;
    for (unsigned w = 0; w < block.warp_count; ++w) {
        WarpState& warp = block.warps[w];
        const unsigned lanes = launch.thread_count - w * kWarpSize;
        warp.existing = lanes >= kWarpSize ? 0xffffffffu : (1u << lanes) - 1;
        warp.exited = 0;
        warp.blocked = 0;
        warp.converging = 0;
        warp.pending_count = 0;
    }
    const unsigned bx = launch.block.x, by = launch.block.y;
    for (unsigned t = 0; t < launch.thread_count; ++t) {
        Fiber* fiber = worker.fibers[t];
        fiber->info.thread_idx = uint3{t % bx, t / bx % by, t / (bx * by)};
        fiber->info.block_idx = block.index;
        fiber->info.block_dim = launch.block;
        fiber->info.grid_dim = launch.grid;
        fiber->linear = t;
        fiber->warp = t / kWarpSize;
        fiber->lane = t % kWarpSize;
        fiber->state = FiberState::Idle;
        fiber->wait = WaitKind::None;
        fiber->copies.clear();
        fiber->group_ends.clear();
        fiber->poll_address = nullptr;
        fiber->poll_count = 0;
        fiber->spinning = false;
    }
    block.start_order.clear();
    if (launch.checks & KEEL_EMU_CHECK_ORDER) {
        // Seeded by the block, not the worker: a block's schedule depends on the seed alone.
        block.random = mix64(launch.seed ^ mix64(linear_block + 1));
        shuffle_by_warp(block, block.start_order);
    }
    if (worker.checks.flags != 0) checks_begin_block(worker);

    Fiber* first = pick_next(block);
    first->state = FiberState::Running;
    worker.current = first;
    context_switch(&worker.scheduler, &first->context);
    // Back on the worker's stack: every fiber has exited, or none can run, or the block was aborted.
    worker.current = nullptr;
    if (block.aborted || block.exited == block.thread_count) return;

    // Deadlock. Group the threads by what they are doing, in thread order.
    std::vector<std::string> keys;
    std::map<std::string, std::vector<unsigned>> threads_by_key;
    bool barrier_involved = false;
    for (unsigned t = 0; t < block.thread_count; ++t) {
        const Fiber* fiber = worker.fibers[t];
        std::string key;
        if (fiber->state == FiberState::Exited) {
            key = "exited";
        } else if (fiber->wait == WaitKind::Barrier) {
            key = "wait at " + describe_site(fiber->wait_what, fiber->wait_site);
            barrier_involved = true;
        } else if (fiber->wait == WaitKind::Collective) {
            const WarpState& warp = block.warps[fiber->warp];
            unsigned missing = 0;
            for (unsigned i = 0; i < warp.pending_count; ++i)
                if (warp.pending[i].mask & (1u << fiber->lane)) missing = warp.pending[i].mask & ~warp.pending[i].arrived;
            const unsigned missing_exited = missing & warp.exited;
            char mask_text[96];
            snprintf(mask_text, sizeof mask_text, " with mask 0x%08x (warp %u, waiting for lanes ", fiber->wait_mask,
                     fiber->warp);
            auto lanes = [](unsigned bits) {
                std::vector<unsigned> ids;
                for (unsigned l = 0; l < kWarpSize; ++l)
                    if (bits & (1u << l)) ids.push_back(l);
                return thread_ranges(ids);
            };
            key = "wait at " + describe_site(fiber->wait_what, fiber->wait_site) + mask_text + lanes(missing);
            if (missing_exited == missing)
                key += ", which exited)";
            else if (missing_exited != 0)
                key += "; lanes " + lanes(missing_exited) + " of them exited)";
            else
                key += ")";
        } else {
            key = "never ran";  // cannot happen: such a thread would still be runnable
        }
        auto [it, inserted] = threads_by_key.try_emplace(key);
        if (inserted) keys.push_back(key);
        it->second.push_back(t);
    }
    std::string message = "kernel '" + std::string(launch.name) + "', block (" + std::to_string(block.index.x) + "," +
                          std::to_string(block.index.y) + "," + std::to_string(block.index.z) +
                          "): deadlock, no thread of the block can continue: ";
    for (size_t i = 0; i < keys.size(); ++i) {
        const auto& ids = threads_by_key[keys[i]];
        message += (i == 0 ? "" : "; ") + std::string(ids.size() == 1 ? "thread " : "threads ") + thread_ranges(ids) +
                   " " + keys[i];
    }
    message += barrier_involved
                   ? ". Every thread of a block must reach the same __syncthreads; a thread that returns early or "
                     "waits elsewhere leaves the others waiting forever (on a GPU: a hang or undefined behavior)."
                   : ". Every lane named in a warp collective's mask must call the same collective with the same mask.";
    if (launch.block.y != 1 || launch.block.z != 1)
        message += " Thread numbers are linear: x + y*blockDim.x + z*blockDim.x*blockDim.y.";
    launch.fail(barrier_involved ? KEEL_EMU_ERROR_BARRIER : KEEL_EMU_ERROR_WARP_COLLECTIVE, std::move(message));
}

std::string describe_thread(const Fiber* fiber) {
    const Block& block = fiber->worker->block;
    char text[256];
    snprintf(text, sizeof text, "kernel '%s', block (%u,%u,%u), thread (%u,%u,%u) [warp %u, lane %u]",
             block.launch->name, block.index.x, block.index.y, block.index.z, fiber->info.thread_idx.x,
             fiber->info.thread_idx.y, fiber->info.thread_idx.z, fiber->warp, fiber->lane);
    return text;
}

std::string describe_site(const char* what, Site site) {
    std::string text = what;
    if (site.file != nullptr && site.file[0] != '\0') text += " (" + std::string(site.file) + ":" + std::to_string(site.line) + ")";
    return text;
}

std::string thread_ranges(const std::vector<unsigned>& ids) {
    std::string text;
    for (size_t i = 0; i < ids.size();) {
        size_t j = i;
        while (j + 1 < ids.size() && ids[j + 1] == ids[j] + 1) ++j;
        if (!text.empty()) text += ", ";
        text += std::to_string(ids[i]);
        if (j > i) text += "-" + std::to_string(ids[j]);
        i = j + 1;
    }
    return text;
}

namespace {
bool same_site(Site a, Site b) {
    return a.line == b.line && (a.file == b.file || (a.file && b.file && strcmp(a.file, b.file) == 0));
}

const char* barrier_name(int op) {
    switch (op) {
        case KEEL_EMU_BAR_COUNT: return "__syncthreads_count";
        case KEEL_EMU_BAR_AND: return "__syncthreads_and";
        case KEEL_EMU_BAR_OR: return "__syncthreads_or";
        default: return "__syncthreads";
    }
}

[[noreturn]] void report_barrier_mismatch(Fiber* self) {
    Block& block = self->worker->block;
    std::vector<std::string> keys;
    std::map<std::string, std::vector<unsigned>> threads_by_key;
    for (unsigned t = 0; t < block.thread_count; ++t) {
        const Fiber* fiber = block.fibers[t];
        std::string key = describe_site(fiber->wait_what, fiber->wait_site);
        auto [it, inserted] = threads_by_key.try_emplace(key);
        if (inserted) keys.push_back(key);
        it->second.push_back(t);
    }
    std::string message = "kernel '" + std::string(block.launch->name) + "', block (" + std::to_string(block.index.x) +
                          "," + std::to_string(block.index.y) + "," + std::to_string(block.index.z) +
                          "): the threads of the block reached different barriers: ";
    for (size_t i = 0; i < keys.size(); ++i) {
        const auto& ids = threads_by_key[keys[i]];
        message += (i == 0 ? "" : "; ") + std::string(ids.size() == 1 ? "thread " : "threads ") + thread_ranges(ids) +
                   " wait at " + keys[i];
    }
    message += ". Every thread of a block must reach the same __syncthreads call (CUDA leaves anything else "
               "undefined).";
    fail_in_fiber(self, KEEL_EMU_ERROR_BARRIER, std::move(message));
}
}  // namespace

}  // namespace keel_emu::rt

using namespace keel_emu::rt;

extern "C" __attribute__((visibility("default"))) const keel_emu_thread_info* keel_emu_rt_thread(void) {
    Worker* worker = current_worker();
    if (worker == nullptr || worker->current == nullptr) {
        fprintf(stderr, "keel_emu: a kernel function was called outside keel_emu_launch\n");
        abort();
    }
    return &worker->current->info;
}

extern "C" __attribute__((visibility("default"))) int keel_emu_rt_barrier(int op, int predicate, const char* file,
                                                                           int line) {
    Worker* worker = current_worker();
    Fiber* self = worker->current;
    Block& block = worker->block;
    const int value = predicate != 0 ? 1 : 0;
    const Site site{file, line};
    if (block.barrier_arrived == 0) {
        block.barrier_op = op;
        block.barrier_site = site;
        block.barrier_mismatch = false;
        block.barrier_value = op == KEEL_EMU_BAR_AND ? 1 : 0;
    } else if (op != block.barrier_op || !same_site(site, block.barrier_site)) {
        block.barrier_mismatch = true;
    }
    switch (op) {
        case KEEL_EMU_BAR_COUNT: block.barrier_value += value; break;
        case KEEL_EMU_BAR_AND: block.barrier_value &= value; break;
        case KEEL_EMU_BAR_OR: block.barrier_value |= value; break;
        default: break;
    }
    self->wait = WaitKind::Barrier;
    self->wait_what = barrier_name(op);
    self->wait_site = site;
    if (++block.barrier_arrived == block.thread_count) {
        // The last thread completes the barrier and carries on without a switch.
        if (block.barrier_mismatch) report_barrier_mismatch(self);
        const int result = block.barrier_value;
        if (worker->checks.flags != 0) checks_barrier(*worker);
        // Shuffled, the last thread to arrive does not simply carry on: it takes its place in the random order.
        const bool shuffled = (block.launch->checks & KEEL_EMU_CHECK_ORDER) != 0;
        if (shuffled) shuffle_by_warp(block, block.barrier_waiters);  // every thread is here: all of them, reordered
        for (Fiber* fiber : block.barrier_waiters) {
            fiber->result = static_cast<uint64_t>(result);
            make_ready(block, fiber);
        }
        block.barrier_waiters.clear();
        block.barrier_arrived = 0;
        self->wait = WaitKind::None;
        if (shuffled) {
            Fiber* next = pick_next(block);
            next->state = FiberState::Running;
            if (next != self) {
                worker->current = next;
                context_switch(&self->context, &next->context);
            }
        }
        return result;
    }
    block.barrier_waiters.push_back(self);
    block_and_switch(self);
    return static_cast<int>(self->result);
}

extern "C" __attribute__((visibility("default"))) void keel_emu_rt_trap(const char* what, const char* file, int line,
                                                                         const char* function) {
    Fiber* self = current_worker()->current;
    std::string message = describe_thread(self) + ": " + what + " at " + file + ":" + std::to_string(line);
    if (function != nullptr && function[0] != '\0') message += " in " + std::string(function);
    message += ".";
    fail_in_fiber(self, KEEL_EMU_ERROR_TRAP, std::move(message));
}

extern "C" __attribute__((visibility("default"))) void keel_emu_rt_misaligned(const void* address, unsigned bytes,
                                                                               const char* file, int line) {
    Fiber* self = current_worker()->current;
    char text[64];
    snprintf(text, sizeof text, "%p", address);
    fail_in_fiber(self, KEEL_EMU_ERROR_MISALIGNED,
                  describe_thread(self) + ": " + std::to_string(bytes) + "-byte vector access at address " + text +
                      " (" + file + ":" + std::to_string(line) + "), which is not " + std::to_string(bytes) +
                      "-byte aligned; on a GPU: a misaligned address error that ends the kernel.");
}

extern "C" __attribute__((visibility("default"))) void* keel_emu_rt_dynamic_shared(void) {
    return current_worker()->block.dynamic_shared;
}

extern "C" __attribute__((visibility("default"))) void keel_emu_rt_cp_async_16(void* shared_dst, const void* global_src,
                                                                                int src_bytes, const char* file,
                                                                                int line) {
    Fiber* self = current_worker()->current;
    const bool aligned =
        (reinterpret_cast<uintptr_t>(shared_dst) | reinterpret_cast<uintptr_t>(global_src)) % 16 == 0;
    if (src_bytes < 0 || src_bytes > 16 || !aligned) {
        char detail[160];
        snprintf(detail, sizeof detail, "destination %p, source %p, src_bytes %d", shared_dst, global_src, src_bytes);
        fail_in_fiber(self, KEEL_EMU_ERROR_MISUSE,
                      describe_thread(self) + ": cp_async_16 at " + file + ":" + std::to_string(line) + " with " +
                          detail + ": both addresses must be 16-byte aligned and src_bytes within 0..16.");
    }
    PendingCopy copy;
    copy.destination = static_cast<unsigned char*>(shared_dst);
    copy.site = Site{file, line};
    copy.pc = __builtin_return_address(0);
    memset(copy.bytes, 0, sizeof copy.bytes);
    if (self->worker->checks.flags != 0) checks_cp_async_issue(self, copy.destination, global_src, src_bytes, copy.pc);
    if (src_bytes > 0) memcpy(copy.bytes, global_src, static_cast<size_t>(src_bytes));
    self->copies.push_back(copy);
}

extern "C" __attribute__((visibility("default"))) void keel_emu_rt_cp_async_commit(void) {
    Fiber* self = current_worker()->current;
    self->group_ends.push_back(self->copies.size());
}

extern "C" __attribute__((visibility("default"))) void keel_emu_rt_cp_async_wait(int pending_groups, const char* file,
                                                                                  int line) {
    Fiber* self = current_worker()->current;
    if (pending_groups < 0)
        fail_in_fiber(self, KEEL_EMU_ERROR_MISUSE,
                      describe_thread(self) + ": cp_async_wait(" + std::to_string(pending_groups) + ") at " + file +
                          ":" + std::to_string(line) + ": the number of pending groups must be >= 0.");
    const size_t groups = self->group_ends.size();
    if (groups <= static_cast<size_t>(pending_groups)) return;
    const size_t retire_groups = groups - static_cast<size_t>(pending_groups);
    const size_t retire_copies_count = self->group_ends[retire_groups - 1];
    retire_copies(self, retire_copies_count);
    self->group_ends.erase(self->group_ends.begin(), self->group_ends.begin() + static_cast<ptrdiff_t>(retire_groups));
    for (size_t& end : self->group_ends) end -= retire_copies_count;
}
