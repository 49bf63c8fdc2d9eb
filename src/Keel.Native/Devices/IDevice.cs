using Keel.Native.Kernels;
using Keel.Native.Numerics;
using Keel.Native.Reference;

namespace Keel.Native.Devices;

/// <summary>
/// A place tensors live and ops run. One op set, three implementations (<see cref="DeviceKind"/>): the
/// C# reference on the CPU, CUDA kernels on a GPU, and the same kernels run by the CPU emulator.
/// <para>
/// Ops are asynchronous on GPU devices (queued in order on the device's stream); copying to the host
/// waits for them. Each op validates shapes and element types before anything runs and throws
/// <see cref="ArgumentException"/> naming the argument. The math of every op is that of its reference in
/// <see cref="Keel.Native.Reference"/>; activation gradients are overwritten, parameter gradients accumulated.
/// An empty <see cref="Tensor"/> (<c>default</c>) stands for an optional input or output that is absent.
/// </para>
/// <para>
/// Element types: the CUDA and emulated devices take fp32 residual streams, statistics and gradients,
/// bf16 or fp32 branch outputs and GEMM operands, as each op documents. The CPU device takes any mix of
/// Float32, BFloat16 and Float64 and computes in fp64 when any tensor is Float64 (for gradient checks),
/// otherwise in fp32.
/// </para>
/// </summary>
public interface IDevice : IDisposable
{
    /// <summary>Which implementation this is.</summary>
    DeviceKind Kind { get; }

    /// <summary>A description for logs, such as <c>cuda:0 NVIDIA H100 80GB HBM3 (sm_90)</c>.</summary>
    string Name { get; }

    // ---------------------------------------------------------------------------------------------- capabilities
    // What a device offers beyond the op set. A device that wraps another (ProfiledDevice) answers for it, so callers
    // ask these rather than testing the device's type.

    /// <summary>
    /// Where this device's kernels compile and launch: its SM count (the emulator's worker threads), which sizes some
    /// kernels' scratch, and the profiler its launches report to. Null for the CPU device, whose ops are the C# reference.
    /// </summary>
    IKernelRuntime? Kernels { get; }

    /// <summary>The device's own memory now, as its driver reports it; null where tensors live in host memory (the CPU and emulated devices).</summary>
    DeviceMemoryInfo? QueryMemory();

    /// <summary>Recording queued work into graphs that replay it with one launch (CUDA graphs on a GPU); null where the device cannot.</summary>
    IGraphCapture? GraphCapture { get; }

    /// <summary>
    /// The CUDA stream every op is queued on (its <see cref="Keel.Cuda.Driver.ContextBoundHandle.Context"/> is the
    /// device's), for libraries that queue work in order with the device's own, such as NCCL's collectives; null on the
    /// CPU and emulated devices, whose tensors live in host memory.
    /// </summary>
    Keel.Cuda.Driver.CudaStream? NativeStream { get; }

    /// <summary>
    /// A new profiler with the clock that times this device's work: CUDA events on a GPU's stream (asynchronous, resolved at
    /// <see cref="KernelProfiler.Flush"/>), the host clock on devices that run synchronously. The caller owns it.
    /// </summary>
    KernelProfiler CreateProfiler();

    // ---------------------------------------------------------------------------------------------- memory

    /// <summary>Allocates an uninitialized tensor (at least 16-byte aligned).</summary>
    DeviceBuffer Allocate(DType dtype, TensorShape shape);

    /// <summary>Copies host memory to the device.</summary>
    void CopyFromHost<T>(ReadOnlySpan<T> source, Tensor destination) where T : unmanaged;

    /// <summary>Copies device memory to the host, waiting for the work that produces it.</summary>
    void CopyToHost<T>(Tensor source, Span<T> destination) where T : unmanaged;

    /// <summary>Copies within the device (same element type and element count).</summary>
    void Copy(Tensor source, Tensor destination);

    /// <summary>Sets every element of <paramref name="destination"/> to zero.</summary>
    void Clear(Tensor destination);

    /// <summary>Waits until all work issued so far has finished.</summary>
    void Synchronize();

    /// <summary>
    /// Makes the kernel scratch buffer <paramref name="scratch"/> hold at least <paramref name="bytes"/> now rather than at
    /// the first op that needs it, so that later ops allocate nothing and a CUDA graph captured later keeps valid
    /// addresses (a <see cref="Model.KeelModel"/> reserves what its memory plan counts). Devices whose ops are not kernels
    /// (the CPU) have no such scratch and ignore it.
    /// </summary>
    /// <exception cref="InvalidOperationException">The buffer must grow while a captured CUDA graph keeps its address.</exception>
    void ReserveScratch(Kernels.KernelScratch scratch, long bytes)
    {
    }

    // ---------------------------------------------------------------------------------------------- ops

    /// <summary>destination = source converted to the destination's element type (to bf16: round to nearest even).</summary>
    void Convert(Tensor source, Tensor destination);

    /// <summary>
    /// c = alpha · op(a) · op(b) + beta · c over row-major matrices (leading dimensions folded into rows):
    /// op(a) is [m, k] (a stored [k, m] when <paramref name="transposeA"/>), op(b) is [k, n] (b stored [n, k]
    /// when <paramref name="transposeB"/>), c is [m, n]. a and b share an element type; c is fp32, or bf16
    /// with bf16 operands; accumulation is fp32 (fp64 on the CPU in Float64).
    /// </summary>
    void Gemm(Tensor a, bool transposeA, Tensor b, bool transposeB, Tensor c, float alpha = 1f, float beta = 0f);

    /// <summary>
    /// The fused residual norm (<see cref="ResidualNorm"/>): s = alpha·x + f, y = N_out(s) or s,
    /// z = N_in(y) or, without <see cref="ResidualNormOptions.InputNorm"/>, y itself in z's element type (the
    /// next GEMM's operand). x, y: [rows, hidden] fp32; f: [rows, hidden] fp32 or bf16, or empty; z:
    /// [rows, hidden] bf16 or fp32, or empty without InputNorm; statistics per <see cref="NormStatistics"/>.
    /// </summary>
    void ResidualNormForward(ResidualNormOptions options, Tensor x, Tensor f, NormWeights outNorm, NormWeights inNorm,
                             Tensor y, Tensor z, NormStatistics statistics);

    /// <summary>
    /// Backward of <see cref="ResidualNormForward"/>: from dy (residual path, or empty) and dz (into z, or empty)
    /// gives dx (fp32, overwritten), df (f's shape and type, overwritten; empty when f is) and accumulates the
    /// gain and bias gradients of both norms. Without InputNorm, dz adds to dy directly.
    /// </summary>
    void ResidualNormBackward(ResidualNormOptions options, Tensor x, Tensor f, Tensor y, NormWeights outNorm, NormWeights inNorm,
                              NormStatistics statistics, Tensor dy, Tensor dz, Tensor dx, Tensor df,
                              NormWeights outNormGradients, NormWeights inNormGradients);

    /// <summary>RoPE (<see cref="Rope"/>) of x [batch, sequence, heads, headDim] into output (may be x itself).</summary>
    void RopeForward(Tensor x, Tensor output, float theta = Rope.DefaultTheta);

    /// <summary>Backward of <see cref="RopeForward"/> (the inverse rotation); dx may be dOutput itself.</summary>
    void RopeBackward(Tensor dOutput, Tensor dx, float theta = Rope.DefaultTheta);

    /// <summary>
    /// Scaled dot-product attention (<see cref="Attention"/>): q [B, S, Hq, D], k and v [B, S, Hkv, D], output
    /// like q, logSumExp [B, Hq, S] fp32. GPU devices take bf16 q, k, v and write bf16 output.
    /// </summary>
    void AttentionForward(AttentionOptions options, Tensor q, Tensor k, Tensor v, Tensor output, Tensor logSumExp);

    /// <summary>Backward of <see cref="AttentionForward"/>: dq, dk, dv (overwritten; dk and dv summed over the query heads that share them).</summary>
    void AttentionBackward(AttentionOptions options, Tensor q, Tensor k, Tensor v, Tensor output, Tensor logSumExp,
                           Tensor dOutput, Tensor dq, Tensor dk, Tensor dv);

    /// <summary>h = silu(gate) ⊙ up over gateUp [rows, 2F] (gate in columns 0..F−1), h [rows, F].</summary>
    void SwiGluForward(Tensor gateUp, Tensor h);

    /// <summary>Backward of <see cref="SwiGluForward"/> into dGateUp [rows, 2F] (overwritten).</summary>
    void SwiGluBackward(Tensor gateUp, Tensor dh, Tensor dGateUp);

    /// <summary>y = GELU(x), tanh approximation (<see cref="Gelu"/>).</summary>
    void GeluForward(Tensor x, Tensor y);

    /// <summary>Backward of <see cref="GeluForward"/> (dx overwritten).</summary>
    void GeluBackward(Tensor x, Tensor dy, Tensor dx);

    /// <summary>output[t] = table[tokens[t]]: tokens [T] Int32, table [vocab, dim], output [T, dim].</summary>
    void EmbeddingForward(Tensor tokens, Tensor table, Tensor output);

    /// <summary>dTable[tokens[t]] += dOutput[t], in a deterministic order.</summary>
    void EmbeddingBackward(Tensor tokens, Tensor dOutput, Tensor dTable);

    /// <summary>
    /// Fused softmax cross-entropy over the first <paramref name="vocabulary"/> columns of logits [T, Vp] fp32 with
    /// targets [T] Int32 in [0, vocabulary) (−1 ignores a token). Vp, the logits' last extent and so their row stride, is
    /// the LM head's padded row count (<see cref="Model.ModelConfig.PaddedVocabularySize"/>, at least the vocabulary);
    /// columns [vocabulary, Vp) are padding and never enter the softmax. losses [T] fp32 receives each token's loss, and,
    /// when <paramref name="dLogits"/> [T, Vp] is not empty, dLogits = (softmax − onehot) · <paramref name="lossScale"/>
    /// in the vocabulary's columns and exactly zero in the padded ones (zero rows for ignored tokens), so the head's padded
    /// rows get no gradient. dLogits may be logits itself, so the backward needs no second [T, Vp] buffer.
    /// </summary>
    void CrossEntropy(Tensor logits, int vocabulary, Tensor targets, Tensor losses, Tensor dLogits, float lossScale);

    /// <summary>
    /// result[0] = ‖gradients‖₂ and result[1] = the clip factor min(1, maxNorm / (norm + 1e-6)) (1 when
    /// maxNorm ≤ 0), both fp32, computed on the device, deterministically; on a GPU the op queues its kernels and
    /// returns without waiting, and <see cref="AdamW"/> reads the clip factor from the device. Reading result back
    /// (as the trainer does, to report the norm) waits for them.
    /// </summary>
    void GradientNorm(Tensor gradients, float maxNorm, Tensor result);

    /// <summary>
    /// One AdamW step (<see cref="AdamW"/>) on fp32 parameters, gradients and moments, the gradients scaled by
    /// clip[1] (as <see cref="GradientNorm"/> writes it); parametersBf16, when not empty, receives the updated
    /// parameters rounded to bf16.
    /// </summary>
    void AdamW(AdamWOptions options, int step, float learningRate, Tensor parameters, Tensor gradients,
               Tensor firstMoment, Tensor secondMoment, Tensor parametersBf16, Tensor clip);
}
