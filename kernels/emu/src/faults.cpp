// faults.cpp — turning a kernel's hardware fault into a launch error instead of a dead host process.
//
// SIGSEGV/SIGBUS (guard pages, unmapped memory, fiber stack overflow), SIGILL (the ud2 that
// -fsanitize=bounds -fsanitize-undefined-trap-on-error plants, or __builtin_trap) and SIGFPE (integer
// division by zero) raised on a worker thread during a launch are recorded and the worker leaves the
// block with siglongjmp, back onto its own stack; the fibers of that block are abandoned and their stacks
// reused. Every other signal — another thread, or no launch running — goes to the handler that was
// installed before ours (the .NET runtime uses SIGSEGV for null references), exactly as if we were not
// there. The handler touches no thread-local storage of this library (in a dlopen'ed library that may
// allocate) and nothing that is not async-signal-safe: it compares pthread_self() with the registered
// workers.
//
// What is caught, and what is not:
// - Global memory (keel_emu_alloc with guarded != 0): any access at or past the allocation's end rounded
//   up to 16 bytes (the trailing guard page), an underflow that reaches the leading guard page, null and
//   wild pointers into unmapped memory. Not caught: the at most 15 bytes between the end and its 16-byte
//   rounding; underflows smaller than the distance from the allocation's start down to its page start;
//   any access that lands in other mapped memory (another allocation, a stack, the heap); overruns of
//   unguarded allocations.
// - Static __shared__ arrays and local arrays: an index outside the declared bound when the array is
//   indexed as an array (a[i], a[i][j]) in code compiled with -fsanitize=bounds — g++ plants a check that
//   traps (SIGILL). Not caught: accesses through a pointer or a cast (float* p = tile; p[300],
//   *(float4*)&tile[i], memcpy), which silently touch neighbouring thread-local storage or stack.
// - Dynamic shared memory, with bounds_checking on: any access at or past its end rounded up to 16 bytes.
//   Not caught: underflows smaller than its start's offset in its page, and anything with bounds_checking
//   off.
// - Fiber stack overflow: the guard page below every fiber stack. A frame larger than a page can jump
//   over the guard unless the kernel is compiled with -fstack-clash-protection (the documented command
//   does), which probes every page of a large frame.
// - Faults inside the runtime on a fiber's behalf (ldmatrix reading a bad row address, cp.async reading a
//   bad source) are reported like the kernel's own; an ldmatrix row is read by whichever lane completes
//   the collective, so the report may name that lane rather than the one that passed the address.
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <mutex>

#include "runtime.h"

namespace keel_emu::rt {
namespace {

constexpr int kHandledSignals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE};
constexpr int kMaxRegisteredWorkers = 512;

struct sigaction previous_actions[65];
std::atomic<Worker*> registered_workers[kMaxRegisteredWorkers];
std::atomic<int> registered_count{0};

uintptr_t program_counter(void* context) {
#if defined(__x86_64__)
    return static_cast<uintptr_t>(static_cast<ucontext_t*>(context)->uc_mcontext.gregs[REG_RIP]);
#elif defined(__aarch64__)
    return static_cast<uintptr_t>(static_cast<ucontext_t*>(context)->uc_mcontext.pc);
#else
    (void)context;
    return 0;
#endif
}

void chain(int signal, siginfo_t* info, void* context) {
    const struct sigaction& previous = previous_actions[signal];
    if ((previous.sa_flags & SA_SIGINFO) != 0 && previous.sa_sigaction != nullptr) {
        previous.sa_sigaction(signal, info, context);
        return;
    }
    if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
        previous.sa_handler(signal);
        return;
    }
    // Default disposition (an ignored synchronous fault would only repeat forever): restore it and let
    // the signal happen again — the faulting instruction re-executes on return, a sent signal is re-raised.
    struct sigaction default_action;
    memset(&default_action, 0, sizeof default_action);
    default_action.sa_handler = SIG_DFL;
    sigemptyset(&default_action.sa_mask);
    sigaction(signal, &default_action, nullptr);
    if (info->si_code <= 0) raise(signal);
}

void handle(int signal, siginfo_t* info, void* context) {
    const pthread_t self = pthread_self();
    const int count = registered_count.load(std::memory_order_acquire);
    for (int i = 0; i < count; ++i) {
        Worker* worker = registered_workers[i].load(std::memory_order_acquire);
        if (worker == nullptr || !worker->running.load(std::memory_order_acquire) ||
            !pthread_equal(worker->thread, self))
            continue;
        worker->fault.signal = signal;
        worker->fault.code = info->si_code;
        worker->fault.address = reinterpret_cast<uintptr_t>(info->si_addr);
        worker->fault.pc = program_counter(context);
        siglongjmp(worker->fault_jump, 1);
    }
    chain(signal, info, context);
}

std::string describe_code_address(uintptr_t pc) {
    if (pc == 0) return std::string();
    char text[512];
    Dl_info where;
    if (dladdr(reinterpret_cast<void*>(pc), &where) != 0 && where.dli_fname != nullptr) {
        const uintptr_t offset = pc - reinterpret_cast<uintptr_t>(where.dli_fbase);
        if (where.dli_sname != nullptr)
            snprintf(text, sizeof text, " at %s+0x%zx (nearest exported symbol %s+0x%zx)", where.dli_fname,
                     static_cast<size_t>(offset), where.dli_sname,
                     static_cast<size_t>(pc - reinterpret_cast<uintptr_t>(where.dli_saddr)));
        else
            snprintf(text, sizeof text, " at %s+0x%zx", where.dli_fname, static_cast<size_t>(offset));
    } else {
        snprintf(text, sizeof text, " at pc %p", reinterpret_cast<void*>(pc));
    }
    return text;
}

}  // namespace

void install_fault_handlers() {
    static std::once_flag once;
    std::call_once(once, [] {
        for (int signal : kHandledSignals) {
            struct sigaction action;
            memset(&action, 0, sizeof action);
            action.sa_sigaction = &handle;
            action.sa_flags = SA_SIGINFO | SA_ONSTACK;  // ONSTACK: a fiber stack overflow leaves no stack
            sigemptyset(&action.sa_mask);
            sigaction(signal, &action, &previous_actions[signal]);
        }
    });
}

void register_worker(Worker* worker) {
    const int index = registered_count.load(std::memory_order_relaxed);
    if (index >= kMaxRegisteredWorkers) return;  // launch.cpp caps the pool well below this
    registered_workers[index].store(worker, std::memory_order_release);
    registered_count.store(index + 1, std::memory_order_release);
}

void ensure_alternate_signal_stack() {
    // One per OS thread that runs fibers, kept for the thread's life; a thread that already has one
    // (the .NET runtime gives its threads one) keeps its own.
    struct AlternateStack {
        void* memory = nullptr;
        AlternateStack() {
            stack_t current;
            if (sigaltstack(nullptr, &current) == 0 && (current.ss_flags & SS_DISABLE) == 0) return;
            const size_t bytes = 64 * 1024;
            memory = malloc(bytes);
            if (memory == nullptr) return;
            stack_t stack;
            stack.ss_sp = memory;
            stack.ss_size = bytes;
            stack.ss_flags = 0;
            sigaltstack(&stack, nullptr);
        }
        ~AlternateStack() {
            if (memory == nullptr) return;
            stack_t disable;
            memset(&disable, 0, sizeof disable);
            disable.ss_flags = SS_DISABLE;
            sigaltstack(&disable, nullptr);
            free(memory);
        }
    };
    static thread_local AlternateStack stack;
    (void)stack;
}

std::string describe_fault(const Worker& worker, int* code) {
    const Fault& fault = worker.fault;
    const Fiber* fiber = worker.current;
    const Launch* launch = worker.block.launch;
    std::string who = fiber != nullptr ? describe_thread(fiber)
                                       : "kernel '" + std::string(launch != nullptr ? launch->name : "?") +
                                             "' (in the emulator runtime, between threads)";
    char address[64];
    snprintf(address, sizeof address, "%p", reinterpret_cast<void*>(fault.address));
    const std::string where = describe_code_address(fault.pc);

    if (fault.signal == SIGILL) {
        *code = KEEL_EMU_ERROR_BOUNDS_TRAP;
        return who + ": trap instruction" + where +
               ". With -fsanitize=bounds -fsanitize-undefined-trap-on-error this is an array index out of bounds "
               "(a static __shared__ array or a local array); it is also what __builtin_trap() executes.";
    }
    if (fault.signal == SIGFPE) {
        *code = KEEL_EMU_ERROR_ARITHMETIC;
        const char* what = fault.code == FPE_INTDIV ? "integer division by zero"
                           : fault.code == FPE_INTOVF ? "integer overflow in division (INT_MIN / -1)"
                                                       : "arithmetic exception";
        return who + ": " + what + where + " (the GPU returns an unspecified value instead of trapping).";
    }
    *code = KEEL_EMU_ERROR_MEMORY_FAULT;
    const uintptr_t a = fault.address;
    const char* access = fault.signal == SIGBUS ? "bus error" : "invalid memory access";
    if (fiber != nullptr && a >= reinterpret_cast<uintptr_t>(fiber->stack.map) &&
        a < reinterpret_cast<uintptr_t>(fiber->stack.base))
        return who + ": stack overflow" + where + " (address " + address + " is in the guard page below the " +
               std::to_string(fiber->stack.bytes / 1024) +
               " KiB fiber stack); raise keel_emu_options.fiber_stack_bytes or shrink the kernel's local arrays.";
    for (const Fiber* other : worker.fibers)
        if (a >= reinterpret_cast<uintptr_t>(other->stack.map) && a < reinterpret_cast<uintptr_t>(other->stack.base))
            return who + ": " + access + " at " + address + where + ", in the stack guard page of thread " +
                   std::to_string(other->linear) + " of this block.";
    const GuardedRegion& shared = worker.dynamic_shared;
    if (launch != nullptr && launch->bounds_checking && shared.map != nullptr &&
        a >= reinterpret_cast<uintptr_t>(shared.map) && a < reinterpret_cast<uintptr_t>(shared.map) + shared.map_bytes) {
        const uintptr_t start = reinterpret_cast<uintptr_t>(shared.data);
        std::string position = a >= start ? "at offset " + std::to_string(a - start) + ", past the end of"
                                          : std::to_string(start - a) + " bytes before the start of";
        return who + ": " + access + " at " + address + where + ": dynamic shared memory out of bounds, " + position +
               " the " + std::to_string(shared.bytes) + "-byte dynamic shared buffer.";
    }
    std::string nearest = registry_describe(a);
    return who + ": " + access + " at " + address + where +
           (nearest.empty() ? std::string(" (no allocation is registered)")
                            : ", " + nearest + " (global memory out of bounds, or an invalid pointer)") +
           ".";
}

}  // namespace keel_emu::rt
