// Keel.Native.Reference — the CPU reference ops.
//
// These ops are the oracle every CUDA kernel is tested against, and they also carry CPU training. They favour
// exact, readable math over speed, except the GEMM, which is cache-blocked, vectorized and multi-threaded.
//
// Conventions every op follows:
// - Row-major storage everywhere; shapes are given as explicit sizes and every span must have exactly the
//   length its shape implies. Bad shapes throw ArgumentException (or a subclass) naming the argument, before
//   any work is done.
// - Each op family is one static class over spans, generic over the element type T (float, double): the same
//   code serves fp32 training and the fp64 gradient checks. Reductions accumulate in fp64, and elementwise
//   math is done in fp64 and rounded once to T on the store.
// - Forward and backward sit side by side. Activation gradients (dx, dq, dGateUp, dLogits...) OVERWRITE their
//   outputs. Parameter gradients (weights, gains, biases, the embedding table) are ACCUMULATED (+=), so
//   micro-batch accumulation and tied weights work: zero them once per optimizer step.
// - Every op is deterministic: results never depend on the thread count or on timing.
// - Outputs must not overlap inputs, except where an op says it may work in place (then the output must be
//   the very same memory as the input, not a shifted view of it).
