// memory.h — page-level memory of the emulator: guarded buffers (global allocations, dynamic shared
// memory), fiber stacks, and the registry of global allocations that fault reports search.
#ifndef KEEL_EMU_MEMORY_H
#define KEEL_EMU_MEMORY_H

#include <stddef.h>
#include <stdint.h>

#include <string>

namespace keel_emu::rt {

size_t page_size();

// A mapping laid out as [guard page][slack][usable bytes][guard page]: the usable bytes, rounded up to
// 16, end exactly where the trailing PROT_NONE page starts.
struct GuardedRegion {
    unsigned char* map = nullptr;
    size_t map_bytes = 0;
    unsigned char* data = nullptr;   // first usable byte
    size_t bytes = 0;                // as requested
    unsigned char* guard = nullptr;  // the trailing guard page
};

bool guarded_map(size_t bytes, GuardedRegion* region);
void guarded_unmap(GuardedRegion* region);

// A fiber stack: [guard page][stack bytes], the guard below since stacks grow down.
struct Stack {
    unsigned char* map = nullptr;
    size_t map_bytes = 0;
    unsigned char* base = nullptr;  // lowest usable address
    size_t bytes = 0;
};

bool stack_map(size_t bytes, Stack* stack);
void stack_unmap(Stack* stack);

// Global allocations made through keel_emu_alloc: guarded (a PROT_NONE page after the end), poisoned (0xff bytes
// rather than zeros), tracked (a written bit per byte; checks.h).
void* registry_allocate(size_t bytes, bool guarded, bool poison, bool track);
void registry_free(void* p);
void registry_mark_written(const void* p, size_t bytes);  // host writes to a tracked allocation
void mark_bits(uint8_t* bits, size_t first, size_t end);   // sets bits [first, end), atomically
// One clause describing where `address` lies relative to the nearest registered allocation, e.g.
// "4 bytes past the end of the 400-byte allocation at 0x7f..". Empty when nothing is registered.
std::string registry_describe(uintptr_t address);

}  // namespace keel_emu::rt

#endif  // KEEL_EMU_MEMORY_H
