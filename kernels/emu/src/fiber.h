// fiber.h — the context switch between emulated CUDA threads.
//
// On x86-64 a switch is a few instructions of assembly (fiber_x86_64.S): push the callee-saved registers,
// save MXCSR and the x87 control word, swap stack pointers, restore. glibc's swapcontext would also save
// and restore the signal mask, a system call per switch — a hundred times slower. Other architectures use
// that ucontext fallback (also selectable on x86-64 with KEEL_EMU_FORCE_UCONTEXT, to test it).
#ifndef KEEL_EMU_FIBER_H
#define KEEL_EMU_FIBER_H

#include <stddef.h>

#if defined(__x86_64__) && !defined(KEEL_EMU_FORCE_UCONTEXT)
#define KEEL_EMU_ASM_SWITCH 1
#else
#define KEEL_EMU_ASM_SWITCH 0
#include <ucontext.h>
#endif

namespace keel_emu::rt {

using FiberFunction = void (*)(void* argument);

#if KEEL_EMU_ASM_SWITCH
extern "C" void keel_emu_switch_context(void** save_sp, void* load_sp);
extern "C" void keel_emu_fiber_start();

// A suspended execution: the stack pointer at which keel_emu_switch_context left it.
struct Context {
    void* sp = nullptr;
};

// Prepares `context` so that switching to it calls function(argument) on the stack [base, base+size).
// The function must never return (a fiber leaves by switching away for the last time).
inline void context_prepare(Context* context, void* stack_base, size_t stack_size, FiberFunction function,
                            void* argument) {
    // The frame keel_emu_switch_context pops, lowest address first: MXCSR + x87 control word, r15, r14,
    // r13 (argument), r12 (function), rbx, rbp, return address (keel_emu_fiber_start). After the `ret`,
    // rsp = frame + 64, which must be 16-byte aligned for the call keel_emu_fiber_start makes.
    auto top = (reinterpret_cast<unsigned long>(stack_base) + stack_size) & ~15ul;
    auto* frame = reinterpret_cast<unsigned long*>(top - 80);
    const unsigned int mxcsr = 0x1f80;       // all exceptions masked, round to nearest, no FTZ/DAZ
    const unsigned short x87_control = 0x037f;  // the x86-64 SysV default
    frame[0] = mxcsr | (static_cast<unsigned long>(x87_control) << 32);
    frame[1] = 0;                                          // r15
    frame[2] = 0;                                          // r14
    frame[3] = reinterpret_cast<unsigned long>(argument);  // r13
    frame[4] = reinterpret_cast<unsigned long>(function);  // r12
    frame[5] = 0;                                          // rbx
    frame[6] = 0;                                          // rbp
    frame[7] = reinterpret_cast<unsigned long>(&keel_emu_fiber_start);
    context->sp = frame;
}

inline void context_switch(Context* from, Context* to) { keel_emu_switch_context(&from->sp, to->sp); }
#else
struct Context {
    ucontext_t uc;
};

void context_prepare(Context* context, void* stack_base, size_t stack_size, FiberFunction function,
                     void* argument);

inline void context_switch(Context* from, Context* to) { swapcontext(&from->uc, &to->uc); }
#endif

}  // namespace keel_emu::rt

#endif  // KEEL_EMU_FIBER_H
