// checks.cpp — the checking modes: shadow state of shared and global memory, the ThreadSanitizer-ABI hooks that
// instrumented kernels call, spin detection, the block order. See checks.h for the model.
#include "checks.h"

#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <algorithm>

#include "runtime.h"

extern "C" void* __tls_get_addr(void* index);  // glibc's: the calling thread's block of a module's TLS

namespace keel_emu::rt {
namespace {

enum AccessKind : uint8_t { kRead = 1, kWrite = 2, kAtomic = 4 };

constexpr uint32_t kSpinPolls = 1u << 12;           // reads of an unchanged value before a thread counts as spinning
constexpr int64_t kSpinGraceNs = 200 * 1000 * 1000;  // every running block stuck this long: nothing can change

int64_t now_ns() {
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

// Whether the kernel object holding `entry` was compiled with the instrumentation (keel_emu.h exports
// keel_emu_instrumented under -fsanitize=thread).
bool instrumented(const void* entry) {
    Dl_info info;
    if (dladdr(entry, &info) == 0 || info.dli_fname == nullptr) return false;
    void* handle = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
    if (handle == nullptr) return false;
    const bool found = dlsym(handle, "keel_emu_instrumented") != nullptr;
    dlclose(handle);
    return found;
}

// The module whose code contains `address`: its PT_TLS size and TLS module id.
struct ModuleTls {
    uintptr_t address = 0;
    size_t bytes = 0;
    size_t module_id = 0;
    bool found = false;
};

int find_module_tls(dl_phdr_info* info, size_t, void* data) {
    auto* result = static_cast<ModuleTls*>(data);
    bool contains = false;
    size_t tls_bytes = 0;
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)& header = info->dlpi_phdr[i];
        const uintptr_t start = info->dlpi_addr + header.p_vaddr;
        if (header.p_type == PT_LOAD && result->address >= start && result->address < start + header.p_memsz)
            contains = true;
        if (header.p_type == PT_TLS) tls_bytes = header.p_memsz;
    }
    if (!contains) return 0;
    result->found = true;
    result->bytes = tls_bytes;
    result->module_id = info->dlpi_tls_modid;
    return 1;
}

std::string thread_name(const Fiber* fiber) {
    char text[96];
    snprintf(text, sizeof text, "thread (%u,%u,%u) [warp %u, lane %u]", fiber->info.thread_idx.x,
             fiber->info.thread_idx.y, fiber->info.thread_idx.z, fiber->warp, fiber->lane);
    return text;
}

std::string block_name(const Block& block) {
    return "kernel '" + std::string(block.launch->name) + "', block (" + std::to_string(block.index.x) + "," +
           std::to_string(block.index.y) + "," + std::to_string(block.index.z) + ")";
}

std::string at_source(const void* pc) {
    const std::string where = source_of(pc);
    return where.empty() ? std::string() : " at " + where;
}

// Which shared memory `address` is in, or null; `cells` and `offset` locate its shadow.
struct SharedPlace {
    std::vector<ShadowCell>* cells = nullptr;
    size_t offset = 0;
    bool dynamic = false;
};

inline SharedPlace shared_place(CheckState& c, uintptr_t address) {
    if (address - c.static_start < c.static_bytes) return SharedPlace{&c.static_cells, address - c.static_start, false};
    if (address - c.dynamic_start < c.dynamic_bytes) return SharedPlace{&c.dynamic_cells, address - c.dynamic_start, true};
    return SharedPlace{};
}

std::string shared_name(const CheckState& c, const SharedPlace& place) {
    char text[128];
    if (place.dynamic)
        snprintf(text, sizeof text, "dynamic shared memory, offset %zu of %zu bytes", place.offset, c.dynamic_bytes);
    else
        snprintf(text, sizeof text, "static shared memory, offset %zu of the %zu bytes of __shared__ variables",
                 place.offset, c.static_bytes);
    return text;
}

// Whether an access by `lane_b` is ordered after one `lane_a` of the same warp made at collective count `stamp`:
// some warp collective since then had both lanes in its mask. Further back than the ring remembers counts as ordered.
bool ordered_in_warp(const CheckState& c, unsigned warp, unsigned lane_a, unsigned lane_b, uint32_t stamp) {
    const uint32_t now = c.sync_count[warp];
    const unsigned both = (1u << lane_a) | (1u << lane_b);
    for (uint32_t s = now, seen = 0; s != stamp && seen < kSyncRing; --s, ++seen)
        if ((c.sync_masks[warp][s % kSyncRing] & both) == both) return true;
    return now - stamp > kSyncRing;
}

// True when an earlier access of `other` (thread + 1) conflicts with the current one of `self`.
bool conflicts(const CheckState& c, const Fiber* self, const Block& block, uint16_t other, uint32_t stamp,
               bool other_atomic, bool self_atomic) {
    if (other == 0 || other - 1u == self->linear || (other_atomic && self_atomic)) return false;
    const Fiber* earlier = block.fibers[other - 1];
    return earlier->warp != self->warp || !ordered_in_warp(c, self->warp, earlier->lane, self->lane, stamp);
}

[[noreturn]] void report_race(Fiber* self, const SharedPlace& place, uint16_t other, const void* other_pc,
                              bool other_wrote, bool self_writes, const void* pc) {
    Block& block = self->worker->block;
    const CheckState& c = self->worker->checks;
    const Fiber* earlier = block.fibers[other - 1];
    const bool same_warp = earlier->warp == self->warp;
    std::string message = block_name(block) + ": shared-memory race on " + shared_name(c, place) + ": " +
                          thread_name(earlier) + (other_wrote ? " wrote it" : " read it") + at_source(other_pc) +
                          ", then " + thread_name(self) + (self_writes ? " writes it" : " reads it") + at_source(pc) +
                          (same_warp ? ", in the same warp with no __syncwarp or warp collective between them"
                                     : ", in the same barrier interval (no __syncthreads between them)") +
                          ". On a GPU the order of the two is undefined; separate them with " +
                          (same_warp ? "__syncwarp()" : "__syncthreads()") + ".";
    fail_in_fiber(self, KEEL_EMU_ERROR_RACE, std::move(message));
}

[[noreturn]] void report_pending(Fiber* self, const SharedPlace& place, uintptr_t address, uint16_t issuer,
                                 bool writes, const void* pc) {
    Block& block = self->worker->block;
    const Fiber* copier = block.fibers[issuer - 1];
    Site site;
    for (const PendingCopy& copy : copier->copies)
        if (address - reinterpret_cast<uintptr_t>(copy.destination) < 16) site = copy.site;
    std::string issued = site.file != nullptr ? " issued at " + describe_site("cp_async_16", site) : std::string();
    std::string message = block_name(block) + ": " + thread_name(self) + (writes ? " writes " : " reads ") +
                          shared_name(self->worker->checks, place) + at_source(pc) + " while a cp.async of " +
                          (copier == self ? std::string("the same thread") : thread_name(copier)) + issued +
                          " is still copying into it. The copy lands at an unknown time before the " +
                          "cp.async.wait_group that retires it; wait for it first (and __syncthreads before other " +
                          "threads read it).";
    fail_in_fiber(self, KEEL_EMU_ERROR_RACE, std::move(message));
}

[[noreturn]] void report_uninitialized_shared(Fiber* self, const SharedPlace& place, size_t bytes, const void* pc) {
    Block& block = self->worker->block;
    std::string message = block_name(block) + ": " + thread_name(self) + " reads " + std::to_string(bytes) +
                          " bytes of " + shared_name(self->worker->checks, place) + at_source(pc) +
                          " that no thread of this block has written. Shared memory starts undefined in every "
                          "block (the emulator fills it with 0xff bytes under this check).";
    fail_in_fiber(self, KEEL_EMU_ERROR_UNINITIALIZED, std::move(message));
}

void shared_access(Fiber* self, const SharedPlace& place, uintptr_t address, size_t bytes, uint8_t kind, const void* pc) {
    Worker& worker = *self->worker;
    CheckState& c = worker.checks;
    const Block& block = worker.block;
    std::vector<ShadowCell>& cells = *place.cells;
    const size_t last = (place.offset + (bytes == 0 ? 0 : bytes - 1)) / kShadowGranule;
    const uint16_t me = static_cast<uint16_t>(self->linear + 1);
    const uint32_t stamp = c.sync_count[self->warp];
    const bool atomic = (kind & kAtomic) != 0;
    for (size_t i = place.offset / kShadowGranule; i <= last && i < cells.size(); ++i) {
        ShadowCell& cell = cells[i];
        if (c.flags & KEEL_EMU_CHECK_RACE) {
            if (cell.pending == c.generation && cell.pending_thread != 0)
                report_pending(self, place, address, cell.pending_thread, (kind & kWrite) != 0, pc);
            if (cell.epoch != c.epoch) {
                cell.epoch = c.epoch;
                cell.writer = cell.reader = cell.reader2 = 0;
                cell.atomic = 0;
            }
            if (conflicts(c, self, block, cell.writer, cell.writer_stamp, cell.atomic & 1, atomic))
                report_race(self, place, cell.writer, cell.writer_pc, true, (kind & kWrite) != 0, pc);
            if (kind & kWrite) {
                if (conflicts(c, self, block, cell.reader, cell.reader_stamp, cell.atomic & 2, atomic))
                    report_race(self, place, cell.reader, cell.reader_pc, false, true, pc);
                if (conflicts(c, self, block, cell.reader2, cell.reader2_stamp, cell.atomic & 4, atomic))
                    report_race(self, place, cell.reader2, cell.reader2_pc, false, true, pc);
                cell.writer = me;
                cell.writer_stamp = stamp;
                cell.writer_pc = pc;
                cell.atomic = static_cast<uint8_t>((cell.atomic & ~1) | (atomic ? 1 : 0));
            }
            if (kind & kRead) {
                if (cell.reader == 0 || cell.reader == me) {
                    cell.reader = me;
                    cell.reader_stamp = stamp;
                    cell.reader_pc = pc;
                    cell.atomic = static_cast<uint8_t>((cell.atomic & ~2) | (atomic ? 2 : 0));
                } else {
                    // Two distinct readers are enough: any later writer differs from one of them.
                    cell.reader2 = me;
                    cell.reader2_stamp = stamp;
                    cell.reader2_pc = pc;
                    cell.atomic = static_cast<uint8_t>((cell.atomic & ~4) | (atomic ? 4 : 0));
                }
            }
        }
        if (c.flags & KEEL_EMU_CHECK_INIT) {
            if ((kind & kRead) && cell.written != c.generation) report_uninitialized_shared(self, place, bytes, pc);
            if (kind & kWrite) cell.written = c.generation;
        }
    }
}

const TrackedAllocation* find_tracked(CheckState& c, uintptr_t address) {
    const std::vector<TrackedAllocation>& tracked = *c.tracked;
    if (tracked.empty()) return nullptr;
    const TrackedAllocation& hint = tracked[c.last_tracked];
    if (address - hint.start < hint.bytes) return &hint;
    auto above = std::upper_bound(tracked.begin(), tracked.end(), address,
                                  [](uintptr_t a, const TrackedAllocation& t) { return a < t.start; });
    if (above == tracked.begin()) return nullptr;
    const TrackedAllocation& candidate = *std::prev(above);
    if (address - candidate.start >= candidate.bytes) return nullptr;
    c.last_tracked = static_cast<size_t>(std::prev(above) - tracked.begin());
    return &candidate;
}

void global_access(Fiber* self, uintptr_t address, size_t bytes, uint8_t kind, const void* pc) {
    CheckState& c = self->worker->checks;
    const TrackedAllocation* allocation = find_tracked(c, address);
    if (allocation == nullptr) return;
    const size_t first = address - allocation->start;
    const size_t end = std::min(first + bytes, allocation->bytes);
    if (kind & kRead) {
        for (size_t i = first; i < end; ++i) {
            if ((__atomic_load_n(&allocation->written[i / 8], __ATOMIC_RELAXED) >> (i % 8)) & 1) continue;
            char where[160];
            snprintf(where, sizeof where, "offset %zu of the %zu-byte allocation at %p", i,
                     allocation->bytes, reinterpret_cast<void*>(allocation->start));
            fail_in_fiber(self, KEEL_EMU_ERROR_UNINITIALIZED,
                          describe_thread(self) + ": reads " + std::to_string(bytes) + " bytes of global memory" +
                              at_source(pc) + " of which the byte at " + where +
                              " was never written, by the host or by a kernel. Device memory starts undefined "
                              "(cuMemAlloc does not clear it; the emulator fills it with 0xff bytes).");
        }
    }
    if (kind & kWrite) {
        bool all = true;
        for (size_t i = first; i < end && all; ++i) all = (__atomic_load_n(&allocation->written[i / 8], __ATOMIC_RELAXED) >> (i % 8)) & 1;
        if (!all) mark_bits(allocation->written, first, end);
    }
}

[[noreturn]] void report_misaligned(Fiber* self, uintptr_t address, size_t bytes, const void* pc) {
    char text[64];
    snprintf(text, sizeof text, "%p", reinterpret_cast<void*>(address));
    fail_in_fiber(self, KEEL_EMU_ERROR_MISALIGNED,
                  describe_thread(self) + ": " + std::to_string(bytes) + "-byte access at address " + text +
                      at_source(pc) + ", which is not " + std::to_string(bytes) +
                      "-byte aligned (on a GPU: a misaligned address error that ends the kernel).");
}

// Called before every instrumented access.
inline void on_access(void* p, size_t bytes, uint8_t kind, bool aligned, const void* pc) {
    Worker* worker = current_worker();
    if (worker == nullptr) return;
    CheckState& c = worker->checks;
    if ((c.flags & KEEL_EMU_CHECKS_INSTRUMENTED) == 0) return;
    const auto address = reinterpret_cast<uintptr_t>(p);
    Fiber* self = worker->current;
    if (self == nullptr) return;
    if (aligned && bytes > 1 && address % bytes != 0) report_misaligned(self, address, bytes, pc);
    if ((c.flags & (KEEL_EMU_CHECK_RACE | KEEL_EMU_CHECK_INIT)) == 0) return;
    const SharedPlace place = shared_place(c, address);
    if (place.cells != nullptr)
        shared_access(self, place, address, bytes, kind, pc);
    else if ((c.flags & KEEL_EMU_CHECK_INIT) && c.tracked != nullptr)
        global_access(self, address, bytes, kind, pc);
}

std::string describe_polled(CheckState& c, uintptr_t address) {
    const SharedPlace place = shared_place(c, address);
    if (place.cells != nullptr) return shared_name(c, place);
    char text[48];
    snprintf(text, sizeof text, "global memory at %p", reinterpret_cast<void*>(address));
    std::string nearest = registry_describe(address);
    return nearest.empty() ? std::string(text) : std::string(text) + " (" + nearest + ")";
}

[[noreturn]] void report_spin(Fiber* self) {
    Worker& worker = *self->worker;
    Launch& launch = *worker.block.launch;
    std::vector<std::string> others;
    for (Worker* other : launch.workers)
        if (other != &worker && other->in_block.load(std::memory_order_acquire)) {
            const uint3 index = other->block.index;
            others.push_back("(" + std::to_string(index.x) + "," + std::to_string(index.y) + "," + std::to_string(index.z) + ")");
        }
    const uint64_t started = std::min(launch.next_block.load(std::memory_order_relaxed), launch.block_count);
    std::string running = others.empty() ? std::string("no other block is running") : "the other running blocks (";
    for (size_t i = 0; i < others.size(); ++i) running += (i == 0 ? "" : ", ") + others[i];
    if (!others.empty()) running += ") are stuck in the same way";
    char value[32];
    snprintf(value, sizeof value, "0x%llx", static_cast<unsigned long long>(self->poll_value));
    std::string message = describe_thread(self) + " spins" + at_source(self->spin_pc) + " reading " +
                          describe_polled(worker.checks, reinterpret_cast<uintptr_t>(self->poll_address)) +
                          ", which stays " + value + ", and nothing can change it: every other thread of its block " +
                          "waits or has exited, " + running + " (" + std::to_string(launch.block_count - started) +
                          " blocks not started). On a GPU this hangs: blocks start in no guaranteed order and a " +
                          "waiting block holds its SM, so a block may wait only for blocks that have already " +
                          "started (take the order from an atomic ticket at block start, not from blockIdx).";
    fail_in_fiber(self, KEEL_EMU_ERROR_SPIN, std::move(message));
}

// Whether every block of the launch still running has been stuck since before each of them last looked.
bool launch_stuck(const Launch& launch, int64_t now) {
    int64_t latest_start = 0;
    for (const Worker* w : launch.workers) {
        if (!w->in_block.load(std::memory_order_acquire)) continue;
        const int64_t since = w->stalled_since.load(std::memory_order_acquire);
        if (since == 0) return false;
        latest_start = std::max(latest_start, since);
    }
    if (now - latest_start < kSpinGraceNs) return false;
    for (const Worker* w : launch.workers)
        if (w->in_block.load(std::memory_order_acquire) &&
            w->last_stuck_check.load(std::memory_order_acquire) <= latest_start)
            return false;  // has not looked since the last block got stuck: it may yet see a change
    return true;
}

// A thread read `value` at `address` (a volatile or atomic read). After kSpinPolls unchanged reads it yields to the
// other threads of its block; when all of them are spinning or waiting, the block is stuck and only another block
// can release it, so the worker sleeps briefly between polls and reports once every running block is stuck.
void spin_poll(Fiber* self, const void* address, uint64_t value, const void* pc) {
    Worker& worker = *self->worker;
    if (address != self->poll_address || value != self->poll_value) {
        self->poll_address = address;
        self->poll_value = value;
        self->poll_count = 0;
        if (self->spinning) {
            self->spinning = false;
            worker.stalled_since.store(0, std::memory_order_release);
        }
        return;
    }
    if (++self->poll_count < kSpinPolls) return;
    self->poll_count = 0;
    self->spinning = true;
    self->spin_pc = pc;
    Block& block = worker.block;
    bool stuck = block.next_unstarted >= block.thread_count;
    for (unsigned i = 0, at = block.ready_head; stuck && i < block.ready_count; ++i, at = (at + 1) % block.thread_count)
        stuck = block.ready[at]->spinning;
    if (stuck) {
        Launch& launch = *block.launch;
        const int64_t now = now_ns();
        if (worker.stalled_since.load(std::memory_order_relaxed) == 0) worker.stalled_since.store(now, std::memory_order_release);
        worker.last_stuck_check.store(now, std::memory_order_release);
        if (launch.failed.load(std::memory_order_relaxed))
            fail_in_fiber(self, KEEL_EMU_ERROR_SPIN, std::string());  // another block failed; leave quietly
        if (launch_stuck(launch, now)) report_spin(self);
        timespec pause{0, 20 * 1000};
        nanosleep(&pause, nullptr);
    }
    yield(self);
}

inline void on_poll(const void* address, uint64_t value, const void* pc) {
    Worker* worker = current_worker();
    if (worker == nullptr || (worker->checks.flags & KEEL_EMU_CHECK_SPIN) == 0 || worker->current == nullptr) return;
    spin_poll(worker->current, address, value, pc);
}

uint64_t read_bits(const volatile void* p, size_t bytes) {
    uint64_t bits = 0;
    switch (bytes) {
        case 1: bits = *static_cast<const volatile uint8_t*>(p); break;
        case 2: bits = *static_cast<const volatile uint16_t*>(p); break;
        case 4: bits = *static_cast<const volatile uint32_t*>(p); break;
        default: bits = *static_cast<const volatile uint64_t*>(p); break;
    }
    return bits;
}

}  // namespace

uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

void BlockOrder::init(uint64_t n, uint64_t seed, bool shuffle) {
    count = n;
    identity = !shuffle || n < 2;
    unsigned bits = 1;
    while ((1ull << bits) < n) ++bits;
    half_bits = (bits + 1) / 2;
    for (int r = 0; r < 4; ++r) keys[r] = mix64(seed + 0x632be59bd9b4e019ull * static_cast<uint64_t>(r + 1));
}

uint64_t BlockOrder::at(uint64_t i) const {
    if (identity) return i;
    const uint64_t mask = (1ull << half_bits) - 1;
    uint64_t x = i;
    do {  // cycle walking: values past `count` go round again, which keeps the map a bijection of [0, count)
        uint64_t left = x >> half_bits, right = x & mask;
        for (uint64_t key : keys) {
            const uint64_t next = left ^ (mix64(right ^ key) & mask);
            left = right;
            right = next;
        }
        x = (left << half_bits) | right;
    } while (x >= count);
    return x;
}

std::string checks_validate(const Launch& launch) {
    if ((launch.checks & KEEL_EMU_CHECKS_INSTRUMENTED) == 0) return std::string();
    if (instrumented(reinterpret_cast<const void*>(launch.entry))) return std::string();
    return "kernel '" + std::string(launch.name) +
           "': the race, init and spin checks watch every memory access, which needs the kernel object compiled "
           "with the instrumentation flags (-fsanitize=thread --param=tsan-distinguish-volatile=1 "
           "--param=tsan-instrument-func-entry-exit=0, compiled and linked separately; README.md, \"Checking "
           "modes\"), and this one was compiled without them.";
}

void checks_begin_launch(Worker& worker, Launch& launch) {
    CheckState& c = worker.checks;
    c.flags = launch.checks;
    c.tracked = nullptr;
    c.last_tracked = 0;
    c.static_start = c.dynamic_start = 0;
    c.static_bytes = c.dynamic_bytes = 0;
    if ((launch.checks & (KEEL_EMU_CHECK_RACE | KEEL_EMU_CHECK_INIT | KEEL_EMU_CHECK_ASYNC)) == 0) return;
    // Static shared memory: the kernel object's thread-local block on this worker (every __shared__ variable of the
    // object; the prelude declares no other thread_local). Asking for it allocates it if this thread has none yet.
    ModuleTls tls;
    tls.address = reinterpret_cast<uintptr_t>(launch.entry);
    dl_iterate_phdr(&find_module_tls, &tls);
    if (tls.found && tls.bytes != 0) {
        struct {
            unsigned long module, offset;
        } index{tls.module_id, 0};
        c.static_start = reinterpret_cast<uintptr_t>(__tls_get_addr(&index));
        c.static_bytes = tls.bytes;
    }
    if (launch.checks & KEEL_EMU_CHECK_INIT) c.tracked = &launch.tracked;
    c.dynamic_start = reinterpret_cast<uintptr_t>(worker.block.dynamic_shared);
    c.dynamic_bytes = launch.dynamic_shared_bytes;
    const size_t static_cells = (c.static_bytes + kShadowGranule - 1) / kShadowGranule;
    const size_t dynamic_cells = (c.dynamic_bytes + kShadowGranule - 1) / kShadowGranule;
    if (c.static_cells.size() < static_cells) c.static_cells.resize(static_cells);
    if (c.dynamic_cells.size() < dynamic_cells) c.dynamic_cells.resize(dynamic_cells);
}

void checks_end_launch(Worker& worker) {
    worker.checks.flags = 0;
    worker.checks.tracked = nullptr;
    worker.checks.last_tracked = 0;
}

void checks_begin_block(Worker& worker) {
    CheckState& c = worker.checks;
    ++c.generation;
    ++c.epoch;
    for (unsigned w = 0; w < kMaxWarps; ++w) c.sync_count[w] = 0;
    if (c.flags & KEEL_EMU_CHECK_INIT) {
        // Shared memory holds whatever the previous block left; make that visible as NaN rather than plausible data.
        if (c.static_bytes != 0) memset(reinterpret_cast<void*>(c.static_start), 0xff, c.static_bytes);
        if (c.dynamic_bytes != 0) memset(reinterpret_cast<void*>(c.dynamic_start), 0xff, c.dynamic_bytes);
    }
}

void checks_barrier(Worker& worker) { ++worker.checks.epoch; }

void checks_collective(Worker& worker, unsigned warp, unsigned mask) {
    CheckState& c = worker.checks;
    const uint32_t count = ++c.sync_count[warp];
    c.sync_masks[warp][count % kSyncRing] = mask;
}

void checks_cp_async_issue(Fiber* self, unsigned char* destination, const void* source, int source_bytes,
                           const void* pc) {
    CheckState& c = self->worker->checks;
    if ((c.flags & KEEL_EMU_CHECK_INIT) && c.tracked != nullptr && source_bytes > 0)
        global_access(self, reinterpret_cast<uintptr_t>(source), static_cast<size_t>(source_bytes), kRead, pc);
    const SharedPlace place = shared_place(c, reinterpret_cast<uintptr_t>(destination));
    if (place.cells != nullptr && (c.flags & KEEL_EMU_CHECK_RACE)) {
        // The copy writes its destination at some moment before the wait: a write as of now, pending until then.
        shared_access(self, place, reinterpret_cast<uintptr_t>(destination), 16, kWrite, pc);
        std::vector<ShadowCell>& cells = *place.cells;
        for (size_t i = place.offset / kShadowGranule; i < (place.offset + 16) / kShadowGranule && i < cells.size(); ++i) {
            cells[i].pending = c.generation;
            cells[i].pending_thread = static_cast<uint16_t>(self->linear + 1);
        }
    }
    if (c.flags & KEEL_EMU_CHECK_ASYNC) memset(destination, 0xff, 16);  // what an early reader sees
}

void checks_cp_async_retire(Fiber* self, unsigned char* destination, const void* pc) {
    CheckState& c = self->worker->checks;
    const SharedPlace place = shared_place(c, reinterpret_cast<uintptr_t>(destination));
    if (place.cells == nullptr || (c.flags & (KEEL_EMU_CHECK_RACE | KEEL_EMU_CHECK_INIT)) == 0) return;
    std::vector<ShadowCell>& cells = *place.cells;
    for (size_t i = place.offset / kShadowGranule; i < (place.offset + 16) / kShadowGranule && i < cells.size(); ++i)
        cells[i].pending_thread = 0;
    shared_access(self, place, reinterpret_cast<uintptr_t>(destination), 16, kWrite, pc);
}

void checks_shared_read(Fiber* reader, const void* address, size_t bytes, const void* pc) {
    CheckState& c = reader->worker->checks;
    if ((c.flags & (KEEL_EMU_CHECK_RACE | KEEL_EMU_CHECK_INIT)) == 0) return;
    const SharedPlace place = shared_place(c, reinterpret_cast<uintptr_t>(address));
    if (place.cells != nullptr) shared_access(reader, place, reinterpret_cast<uintptr_t>(address), bytes, kRead, pc);
}

std::string source_of(const void* pc) {
    if (pc == nullptr) return std::string();
    Dl_info info;
    if (dladdr(pc, &info) == 0 || info.dli_fname == nullptr) return std::string();
    // The return address is the instruction after the call; the one before it is the access.
    const uintptr_t offset = reinterpret_cast<uintptr_t>(pc) - reinterpret_cast<uintptr_t>(info.dli_fbase) - 1;
    char fallback[64];
    snprintf(fallback, sizeof fallback, "+0x%zx", static_cast<size_t>(offset));
    const std::string module = info.dli_fname;
    // Reports are rare and end the launch, so running addr2line (binutils, beside every g++) is affordable.
    std::string command = "addr2line -i -e '" + module + "' " + fallback + " 2>/dev/null";
    std::string lines;
    if (module.find('\'') == std::string::npos) {
        if (FILE* pipe = popen(command.c_str(), "r")) {
            char line[1024];
            while (fgets(line, sizeof line, pipe) != nullptr) {
                std::string text = line;
                while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
                const size_t discriminator = text.find(" (discriminator");
                if (discriminator != std::string::npos) text.resize(discriminator);
                const size_t slash = text.rfind('/');
                if (slash != std::string::npos) text = text.substr(slash + 1);
                if (text.empty() || text[0] == '?') continue;
                lines += lines.empty() ? text : ", inlined at " + text;
            }
            pclose(pipe);
        }
    }
    const size_t slash = module.rfind('/');
    return lines.empty() ? module.substr(slash == std::string::npos ? 0 : slash + 1) + fallback : lines;
}

}  // namespace keel_emu::rt

using namespace keel_emu::rt;

// ---------------------------------------------------------------------------------------------------------------
// The ThreadSanitizer ABI that g++ -fsanitize=thread emits calls to. Exported under their own names (exports.map);
// kernel objects built with the instrumentation resolve them here, never in libtsan, which is not linked.
#define KEEL_EMU_HOOK extern "C" __attribute__((visibility("default")))
#define KEEL_EMU_PC __builtin_return_address(0)

KEEL_EMU_HOOK void __tsan_init() {}
KEEL_EMU_HOOK void __tsan_func_entry(void*) {}
KEEL_EMU_HOOK void __tsan_func_exit() {}
KEEL_EMU_HOOK void __tsan_vptr_update(void**, void*) {}
KEEL_EMU_HOOK void __tsan_vptr_read(void**) {}
KEEL_EMU_HOOK void __tsan_read_range(void* p, unsigned long n) { on_access(p, n, kRead, false, KEEL_EMU_PC); }
KEEL_EMU_HOOK void __tsan_write_range(void* p, unsigned long n) { on_access(p, n, kWrite, false, KEEL_EMU_PC); }

#define KEEL_EMU_ACCESS_HOOKS(N)                                                                                   \
    KEEL_EMU_HOOK void __tsan_read##N(void* p) { on_access(p, N, kRead, true, KEEL_EMU_PC); }                       \
    KEEL_EMU_HOOK void __tsan_write##N(void* p) { on_access(p, N, kWrite, true, KEEL_EMU_PC); }                     \
    KEEL_EMU_HOOK void __tsan_unaligned_read##N(void* p) { on_access(p, N, kRead, false, KEEL_EMU_PC); }            \
    KEEL_EMU_HOOK void __tsan_unaligned_write##N(void* p) { on_access(p, N, kWrite, false, KEEL_EMU_PC); }          \
    KEEL_EMU_HOOK void __tsan_volatile_write##N(void* p) { on_access(p, N, kWrite, true, KEEL_EMU_PC); }            \
    KEEL_EMU_HOOK void __tsan_unaligned_volatile_write##N(void* p) { on_access(p, N, kWrite, false, KEEL_EMU_PC); }
KEEL_EMU_ACCESS_HOOKS(1)
KEEL_EMU_ACCESS_HOOKS(2)
KEEL_EMU_ACCESS_HOOKS(4)
KEEL_EMU_ACCESS_HOOKS(8)
KEEL_EMU_ACCESS_HOOKS(16)
#undef KEEL_EMU_ACCESS_HOOKS

// A volatile read is how a kernel polls a flag another thread sets: besides the access checks, spin detection.
#define KEEL_EMU_VOLATILE_READ_HOOKS(N)                                                                            \
    KEEL_EMU_HOOK void __tsan_volatile_read##N(void* p) {                                                          \
        on_access(p, N, kRead, true, KEEL_EMU_PC);                                                                 \
        if (N <= 8) on_poll(p, read_bits(p, N), KEEL_EMU_PC);                                                      \
    }                                                                                                              \
    KEEL_EMU_HOOK void __tsan_unaligned_volatile_read##N(void* p) {                                                \
        on_access(p, N, kRead, false, KEEL_EMU_PC);                                                                \
        if (N <= 8) on_poll(p, read_bits(p, N), KEEL_EMU_PC);                                                      \
    }
KEEL_EMU_VOLATILE_READ_HOOKS(1)
KEEL_EMU_VOLATILE_READ_HOOKS(2)
KEEL_EMU_VOLATILE_READ_HOOKS(4)
KEEL_EMU_VOLATILE_READ_HOOKS(8)
KEEL_EMU_VOLATILE_READ_HOOKS(16)
#undef KEEL_EMU_VOLATILE_READ_HOOKS

// Atomics: performed here for real (blocks run on several OS threads), checked as atomic accesses (atomics of two
// threads do not race with each other), and their results fed to spin detection.
#define KEEL_EMU_ATOMIC_HOOKS(N, T)                                                                                \
    KEEL_EMU_HOOK T __tsan_atomic##N##_load(const volatile T* a, int order) {                                      \
        on_access(const_cast<T*>(a), sizeof(T), kRead | kAtomic, true, KEEL_EMU_PC);                               \
        const T value = __atomic_load_n(a, order);                                                                 \
        on_poll(const_cast<T*>(a), static_cast<uint64_t>(value), KEEL_EMU_PC);                                    \
        return value;                                                                                              \
    }                                                                                                              \
    KEEL_EMU_HOOK void __tsan_atomic##N##_store(volatile T* a, T v, int order) {                                   \
        on_access(const_cast<T*>(a), sizeof(T), kWrite | kAtomic, true, KEEL_EMU_PC);                              \
        __atomic_store_n(a, v, order);                                                                             \
    }                                                                                                              \
    KEEL_EMU_HOOK T __tsan_atomic##N##_exchange(volatile T* a, T v, int order) {                                   \
        on_access(const_cast<T*>(a), sizeof(T), kRead | kWrite | kAtomic, true, KEEL_EMU_PC);                      \
        return __atomic_exchange_n(a, v, order);                                                                   \
    }                                                                                                              \
    KEEL_EMU_ATOMIC_RMW(N, T, fetch_add)                                                                           \
    KEEL_EMU_ATOMIC_RMW(N, T, fetch_sub)                                                                           \
    KEEL_EMU_ATOMIC_RMW(N, T, fetch_and)                                                                           \
    KEEL_EMU_ATOMIC_RMW(N, T, fetch_or)                                                                            \
    KEEL_EMU_ATOMIC_RMW(N, T, fetch_xor)                                                                           \
    KEEL_EMU_ATOMIC_RMW(N, T, fetch_nand)                                                                          \
    KEEL_EMU_ATOMIC_CAS(N, T, strong)                                                                              \
    KEEL_EMU_ATOMIC_CAS(N, T, weak)                                                                                \
    KEEL_EMU_HOOK T __tsan_atomic##N##_compare_exchange_val(volatile T* a, T expected, T desired, int order,       \
                                                           int failure) {                                          \
        on_access(const_cast<T*>(a), sizeof(T), kRead | kWrite | kAtomic, true, KEEL_EMU_PC);                      \
        __atomic_compare_exchange_n(a, &expected, desired, false, order, failure);                                 \
        on_poll(const_cast<T*>(a), static_cast<uint64_t>(expected), KEEL_EMU_PC);                                  \
        return expected;                                                                                           \
    }
// A failed compare-and-swap read a value without changing it: a poll. (The weak form is run as the strong one.)
#define KEEL_EMU_ATOMIC_CAS(N, T, STRENGTH)                                                                        \
    KEEL_EMU_HOOK int __tsan_atomic##N##_compare_exchange_##STRENGTH(volatile T* a, T* expected, T desired,       \
                                                                    int order, int failure) {                      \
        on_access(const_cast<T*>(a), sizeof(T), kRead | kWrite | kAtomic, true, KEEL_EMU_PC);                      \
        const bool done = __atomic_compare_exchange_n(a, expected, desired, false, order, failure);                \
        if (!done) on_poll(const_cast<T*>(a), static_cast<uint64_t>(*expected), KEEL_EMU_PC);                      \
        return done;                                                                                               \
    }
// An atomic read-modify-write that leaves the value as it was (atomicAdd(p, 0), a failed CAS) is a poll too.
#define KEEL_EMU_ATOMIC_RMW(N, T, OP)                                                                              \
    KEEL_EMU_HOOK T __tsan_atomic##N##_##OP(volatile T* a, T v, int order) {                                       \
        on_access(const_cast<T*>(a), sizeof(T), kRead | kWrite | kAtomic, true, KEEL_EMU_PC);                      \
        const T old = __atomic_##OP(a, v, order);                                                                  \
        on_poll(const_cast<T*>(a), static_cast<uint64_t>(old), KEEL_EMU_PC);                                       \
        return old;                                                                                                \
    }
KEEL_EMU_ATOMIC_HOOKS(8, uint8_t)
KEEL_EMU_ATOMIC_HOOKS(16, uint16_t)
KEEL_EMU_ATOMIC_HOOKS(32, uint32_t)
KEEL_EMU_ATOMIC_HOOKS(64, uint64_t)
#undef KEEL_EMU_ATOMIC_HOOKS
#undef KEEL_EMU_ATOMIC_CAS
#undef KEEL_EMU_ATOMIC_RMW

KEEL_EMU_HOOK void __tsan_atomic_thread_fence(int order) { __atomic_thread_fence(order); }
KEEL_EMU_HOOK void __tsan_atomic_signal_fence(int order) { __atomic_signal_fence(order); }
