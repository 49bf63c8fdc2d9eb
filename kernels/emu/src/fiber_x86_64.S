// fiber_x86_64.S — context switch for the emulated CUDA threads (x86-64 System V).
//
// void keel_emu_switch_context(void** save_sp /* rdi */, void* load_sp /* rsi */)
//   Saves the callee-saved state of the caller on its own stack, stores the stack pointer in *save_sp,
//   loads load_sp and restores the state found there. The caller-saved registers need no saving: the
//   switch is an ordinary call as far as the compiler of the caller is concerned. MXCSR and the x87
//   control word are callee-saved under the ABI, so they travel with the fiber too.
#if defined(__x86_64__)
        .text
        .globl  keel_emu_switch_context
        .hidden keel_emu_switch_context
        .type   keel_emu_switch_context, @function
        .p2align 4
keel_emu_switch_context:
        .cfi_startproc
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        subq    $8, %rsp
        stmxcsr (%rsp)
        fnstcw  4(%rsp)
        movq    %rsp, (%rdi)
        movq    %rsi, %rsp
        ldmxcsr (%rsp)
        fldcw   4(%rsp)
        addq    $8, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        ret
        .cfi_endproc
        .size   keel_emu_switch_context, .-keel_emu_switch_context

// First code a fresh fiber runs (context_prepare put its address as the return address): calls
// r12(r13). The function never returns; the ud2 makes sure a bug there cannot run off into the void.
        .globl  keel_emu_fiber_start
        .hidden keel_emu_fiber_start
        .type   keel_emu_fiber_start, @function
        .p2align 4
keel_emu_fiber_start:
        .cfi_startproc
        .cfi_undefined rip      // the bottom of a fiber's stack: unwinders and debuggers stop here
        movq    %r13, %rdi
        callq   *%r12
        ud2
        .cfi_endproc
        .size   keel_emu_fiber_start, .-keel_emu_fiber_start
#endif
        .section .note.GNU-stack, "", @progbits
