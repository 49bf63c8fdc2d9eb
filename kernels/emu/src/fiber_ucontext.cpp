// fiber_ucontext.cpp — the portable context switch: glibc's makecontext/swapcontext. Correct everywhere
// glibc runs, but swapcontext makes a system call (sigprocmask) per switch; fiber.h explains the choice.
#include "fiber.h"

#if !KEEL_EMU_ASM_SWITCH
#include <stdint.h>

namespace keel_emu::rt {
namespace {
// makecontext passes int arguments only, so the two pointers travel as 32-bit halves.
void start_trampoline(unsigned function_lo, unsigned function_hi, unsigned argument_lo, unsigned argument_hi) {
    auto function = reinterpret_cast<FiberFunction>((static_cast<uintptr_t>(function_hi) << 32) | function_lo);
    auto* argument = reinterpret_cast<void*>((static_cast<uintptr_t>(argument_hi) << 32) | argument_lo);
    function(argument);
    __builtin_trap();  // fiber functions never return
}
}  // namespace

void context_prepare(Context* context, void* stack_base, size_t stack_size, FiberFunction function,
                     void* argument) {
    getcontext(&context->uc);
    context->uc.uc_stack.ss_sp = stack_base;
    context->uc.uc_stack.ss_size = stack_size;
    context->uc.uc_link = nullptr;
    auto f = reinterpret_cast<uintptr_t>(function);
    auto a = reinterpret_cast<uintptr_t>(argument);
    makecontext(&context->uc, reinterpret_cast<void (*)()>(&start_trampoline), 4, static_cast<unsigned>(f),
                static_cast<unsigned>(f >> 32), static_cast<unsigned>(a), static_cast<unsigned>(a >> 32));
}
}  // namespace keel_emu::rt
#endif
