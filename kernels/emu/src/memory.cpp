// memory.cpp — see memory.h.
#include "memory.h"

#include "checks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <iterator>
#include <map>
#include <mutex>

namespace keel_emu::rt {

size_t page_size() {
    static const size_t size = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    return size;
}

namespace {
size_t round_up(size_t value, size_t multiple) { return (value + multiple - 1) / multiple * multiple; }
}  // namespace

bool guarded_map(size_t bytes, GuardedRegion* region) {
    const size_t page = page_size();
    const size_t usable = round_up(bytes, 16);
    const size_t body = round_up(usable, page);
    const size_t total = body + 2 * page;
    void* map = mmap(nullptr, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (map == MAP_FAILED) return false;
    auto* base = static_cast<unsigned char*>(map);
    if (body != 0 && mprotect(base + page, body, PROT_READ | PROT_WRITE) != 0) {
        munmap(map, total);
        return false;
    }
    region->map = base;
    region->map_bytes = total;
    region->guard = base + page + body;
    region->data = region->guard - usable;
    region->bytes = bytes;
    return true;
}

void guarded_unmap(GuardedRegion* region) {
    if (region->map != nullptr) munmap(region->map, region->map_bytes);
    *region = GuardedRegion{};
}

bool stack_map(size_t bytes, Stack* stack) {
    const size_t page = page_size();
    const size_t usable = round_up(bytes, page);
    const size_t total = usable + page;
    void* map = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
                     -1, 0);
    if (map == MAP_FAILED) return false;
    auto* base = static_cast<unsigned char*>(map);
    if (mprotect(base, page, PROT_NONE) != 0) {
        munmap(map, total);
        return false;
    }
    stack->map = base;
    stack->map_bytes = total;
    stack->base = base + page;
    stack->bytes = usable;
    return true;
}

void stack_unmap(Stack* stack) {
    if (stack->map != nullptr) munmap(stack->map, stack->map_bytes);
    *stack = Stack{};
}

namespace {
struct Allocation {
    size_t bytes = 0;
    bool guarded = false;
    GuardedRegion region;        // when guarded
    uint8_t* written = nullptr;  // when tracked: a bit per byte, set once the byte is written
};

struct Registry {
    std::mutex mutex;
    std::map<uintptr_t, Allocation> by_start;
};

Registry& registry() {
    static Registry* instance = new Registry();  // never destroyed: frees may come during process exit
    return *instance;
}
}  // namespace

void* registry_allocate(size_t bytes, bool guarded, bool poison, bool track) {
    Allocation allocation;
    allocation.bytes = bytes;
    allocation.guarded = guarded;
    if (track) {
        allocation.written = static_cast<uint8_t*>(calloc(bytes / 8 + 1, 1));
        if (allocation.written == nullptr) return nullptr;
    }
    void* p = nullptr;
    if (guarded) {
        if (!guarded_map(bytes, &allocation.region)) {
            free(allocation.written);
            return nullptr;
        }
        p = allocation.region.data;  // mmap'ed pages are zero already
        if (poison) memset(p, 0xff, bytes);
    } else {
        p = aligned_alloc(64, round_up(bytes == 0 ? 1 : bytes, 64));
        if (p == nullptr) {
            free(allocation.written);
            return nullptr;
        }
        memset(p, poison ? 0xff : 0, bytes);
    }
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    r.by_start[reinterpret_cast<uintptr_t>(p)] = allocation;
    return p;
}

void registry_free(void* p) {
    if (p == nullptr) return;
    Allocation allocation;
    {
        Registry& r = registry();
        std::lock_guard<std::mutex> lock(r.mutex);
        auto it = r.by_start.find(reinterpret_cast<uintptr_t>(p));
        if (it == r.by_start.end()) return;
        allocation = it->second;
        r.by_start.erase(it);
    }
    if (allocation.guarded)
        guarded_unmap(&allocation.region);
    else
        free(p);
    free(allocation.written);
}

void registry_mark_written(const void* p, size_t bytes) {
    if (p == nullptr || bytes == 0) return;
    const auto address = reinterpret_cast<uintptr_t>(p);
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    auto above = r.by_start.upper_bound(address);
    if (above == r.by_start.begin()) return;
    const auto& [start, allocation] = *std::prev(above);
    if (allocation.written == nullptr || address >= start + allocation.bytes) return;
    const size_t first = address - start, end = first + bytes < allocation.bytes ? first + bytes : allocation.bytes;
    mark_bits(allocation.written, first, end);
}

void mark_bits(uint8_t* bits, size_t first, size_t end) {
    size_t i = first;
    for (; i < end && i % 8 != 0; ++i) __atomic_fetch_or(&bits[i / 8], static_cast<uint8_t>(1u << (i % 8)), __ATOMIC_RELAXED);
    for (; i + 8 <= end; i += 8) __atomic_store_n(&bits[i / 8], static_cast<uint8_t>(0xff), __ATOMIC_RELAXED);
    for (; i < end; ++i) __atomic_fetch_or(&bits[i / 8], static_cast<uint8_t>(1u << (i % 8)), __ATOMIC_RELAXED);
}

std::vector<TrackedAllocation> tracked_snapshot() {
    std::vector<TrackedAllocation> tracked;
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    for (const auto& [start, allocation] : r.by_start)
        if (allocation.written != nullptr) tracked.push_back(TrackedAllocation{start, allocation.bytes, allocation.written});
    return tracked;  // std::map iterates in address order
}

std::string registry_describe(uintptr_t address) {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    if (r.by_start.empty()) return std::string();
    // The candidates: the allocation starting at or below the address, and the one starting above it.
    auto above = r.by_start.upper_bound(address);
    const std::pair<const uintptr_t, Allocation>* best = nullptr;
    uintptr_t best_distance = UINTPTR_MAX;
    if (above != r.by_start.begin()) {
        auto below = std::prev(above);
        uintptr_t end = below->first + below->second.bytes;
        uintptr_t distance = address < end ? 0 : address - end + 1;
        best = &*below;
        best_distance = distance;
    }
    if (above != r.by_start.end() && above->first - address < best_distance) best = &*above;
    char text[256];
    const uintptr_t start = best->first;
    const size_t bytes = best->second.bytes;
    const char* kind = best->second.guarded ? "guarded" : "unguarded";
    if (address < start)
        snprintf(text, sizeof text, "%zu bytes before the start of the %zu-byte %s allocation at %p",
                 static_cast<size_t>(start - address), bytes, kind, reinterpret_cast<void*>(start));
    else
        snprintf(text, sizeof text, "at offset %zu of the %zu-byte %s allocation at %p%s",
                 static_cast<size_t>(address - start), bytes, kind, reinterpret_cast<void*>(start),
                 address >= start + bytes ? " (past its end)" : "");
    return text;
}

}  // namespace keel_emu::rt
