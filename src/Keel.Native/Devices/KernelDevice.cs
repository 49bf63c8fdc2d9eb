using Keel.Native.Kernels;
using Keel.Native.Kernels.Launchers;
using Keel.Native.Numerics;
using Keel.Native.Reference;

namespace Keel.Native.Devices;

/// <summary>
/// What the CUDA and emulated devices share: every op that is a kernel of <c>kernels/</c>, launched through
/// the typed launchers on an <see cref="IKernelRuntime"/>. Subclasses supply memory, copies and the GEMM
/// (cuBLAS on the GPU, the reference GEMM under emulation). A kernel family is compiled and loaded the first
/// time one of its ops runs.
/// <para>
/// The launchers' scratch is the device's <see cref="Workspace"/>: the one place launchers get device memory from
/// (they never call back into the device), sized before a step by what the model's memory plan counted
/// (<see cref="ReserveScratch"/>) and kept where it is while a CUDA graph captured with it is open.
/// </para>
/// </summary>
public abstract class KernelDevice : IDevice
{
    private readonly Lazy<CastKernels> _cast;
    private readonly Lazy<OptimizerKernels> _optimizer;
    private readonly ActivationKernels _activations;
    private readonly Lazy<EmbeddingKernels> _embedding;
    private readonly CrossEntropyKernels _crossEntropy;
    private readonly ResidualNormKernels _residualNorm;
    private readonly Lazy<AttentionKernels> _attention;
    private readonly Lazy<RopeKernels> _rope;
    private bool _tokenCheckPending;

    /// <summary>Launches kernels on <paramref name="runtime"/>.</summary>
    protected KernelDevice(IKernelRuntime runtime)
    {
        Runtime = runtime;
        // Scratch is Int32 words; the delegates run after the subclass is constructed, at the first use.
        Workspace = new KernelWorkspace(bytes => Allocate(DType.Int32, new TensorShape((bytes + 3) / 4)), Clear, SynchronizeCore);
        var workspace = Workspace;
        _cast = new(() => new CastKernels(runtime));
        _optimizer = new(() => new OptimizerKernels(runtime, workspace));
        // These launchers load their kernels on first use, after checking the arguments.
        _activations = new ActivationKernels(runtime);
        _embedding = new(() => new EmbeddingKernels(runtime, workspace));
        _crossEntropy = new CrossEntropyKernels(runtime);
        _residualNorm = new ResidualNormKernels(runtime, workspace);
        _attention = new(() => new AttentionKernels(runtime, workspace));
        _rope = new(() => new RopeKernels(runtime, workspace));
    }

    /// <summary>Where this device's kernels compile and launch.</summary>
    public IKernelRuntime Runtime { get; }

    /// <summary>The kernel launchers' scratch buffers on this device, which it owns.</summary>
    public KernelWorkspace Workspace { get; }

    /// <inheritdoc />
    public void ReserveScratch(KernelScratch scratch, long bytes) => Workspace.Reserve(scratch, bytes);

    /// <inheritdoc />
    public abstract DeviceKind Kind { get; }

    /// <inheritdoc />
    public abstract string Name { get; }

    /// <inheritdoc />
    IKernelRuntime? IDevice.Kernels => Runtime;

    /// <inheritdoc />
    public virtual DeviceMemoryInfo? QueryMemory() => null;

    /// <inheritdoc />
    public virtual IGraphCapture? GraphCapture => null;

    /// <inheritdoc />
    public virtual Keel.Cuda.Driver.CudaStream? NativeStream => null;

    /// <inheritdoc />
    public virtual KernelProfiler CreateProfiler() => KernelProfiler.WallClock();

    /// <inheritdoc />
    public abstract DeviceBuffer Allocate(DType dtype, TensorShape shape);

    /// <inheritdoc />
    public abstract void CopyFromHost<T>(ReadOnlySpan<T> source, Tensor destination) where T : unmanaged;

    /// <inheritdoc />
    /// <remarks>Also reports the errors kernels recorded on the device since the last synchronization (out-of-range token ids).</remarks>
    public void CopyToHost<T>(Tensor source, Span<T> destination) where T : unmanaged
    {
        CopyToHostCore(source, destination);
        ThrowRecordedErrors();
    }

    /// <summary>Copies device memory to the host after the work queued before it.</summary>
    protected abstract void CopyToHostCore<T>(Tensor source, Span<T> destination) where T : unmanaged;

    /// <inheritdoc />
    public abstract void Copy(Tensor source, Tensor destination);

    /// <inheritdoc />
    public abstract void Clear(Tensor destination);

    /// <inheritdoc />
    /// <remarks>Also reports the errors kernels recorded on the device since the last synchronization (out-of-range token ids).</remarks>
    public void Synchronize()
    {
        SynchronizeCore();
        ThrowRecordedErrors();
    }

    /// <summary>Waits until all work issued so far has finished.</summary>
    protected abstract void SynchronizeCore();

    /// <inheritdoc />
    public abstract void Gemm(Tensor a, bool transposeA, Tensor b, bool transposeB, Tensor c, float alpha = 1f, float beta = 0f);

    /// <inheritdoc />
    public void Convert(Tensor source, Tensor destination)
    {
        if (source.DType == destination.DType) Copy(source, destination);
        else _cast.Value.Convert(source, destination);
    }

    /// <inheritdoc />
    public void GradientNorm(Tensor gradients, float maxNorm, Tensor result) => _optimizer.Value.GradientNorm(gradients, maxNorm, result);

    /// <inheritdoc />
    public void AdamW(AdamWOptions options, int step, float learningRate, Tensor parameters, Tensor gradients,
                      Tensor firstMoment, Tensor secondMoment, Tensor parametersBf16, Tensor clip) =>
        _optimizer.Value.AdamW(options, step, learningRate, parameters, gradients, firstMoment, secondMoment, parametersBf16, clip);

    /// <inheritdoc />
    /// <remarks>z must be BFloat16 here (or empty without InputNorm); <see cref="ResidualNormKernels"/> lists the element types.</remarks>
    public void ResidualNormForward(ResidualNormOptions options, Tensor x, Tensor f, NormWeights outNorm, NormWeights inNorm,
                                    Tensor y, Tensor z, NormStatistics statistics) =>
        _residualNorm.Forward(options, x, f, outNorm, inNorm, y, z, statistics);

    /// <inheritdoc />
    /// <remarks>dz must be BFloat16 here (or empty without InputNorm); the gradient sums go through the workspace's <see cref="KernelScratch.ResidualNormPartials"/>.</remarks>
    public void ResidualNormBackward(ResidualNormOptions options, Tensor x, Tensor f, Tensor y, NormWeights outNorm, NormWeights inNorm,
                                     NormStatistics statistics, Tensor dy, Tensor dz, Tensor dx, Tensor df,
                                     NormWeights outNormGradients, NormWeights inNormGradients) =>
        _residualNorm.Backward(options, x, f, y, outNorm, inNorm, statistics, dy, dz, dx, df, outNormGradients, inNormGradients);

    /// <inheritdoc />
    public void RopeForward(Tensor x, Tensor output, float theta = Rope.DefaultTheta) => _rope.Value.Rotate(x, output, theta, inverse: false);

    /// <inheritdoc />
    public void RopeBackward(Tensor dOutput, Tensor dx, float theta = Rope.DefaultTheta) => _rope.Value.Rotate(dOutput, dx, theta, inverse: true);

    /// <inheritdoc />
    public void AttentionForward(AttentionOptions options, Tensor q, Tensor k, Tensor v, Tensor output, Tensor logSumExp) =>
        _attention.Value.Forward(options, q, k, v, output, logSumExp);

    /// <inheritdoc />
    public void AttentionBackward(AttentionOptions options, Tensor q, Tensor k, Tensor v, Tensor output, Tensor logSumExp,
                                  Tensor dOutput, Tensor dq, Tensor dk, Tensor dv) =>
        _attention.Value.Backward(options, q, k, v, output, logSumExp, dOutput, dq, dk, dv);

    /// <inheritdoc />
    /// <remarks>BFloat16 or Float32 tensors, all of one type; F a multiple of 8; 16-byte aligned.</remarks>
    public void SwiGluForward(Tensor gateUp, Tensor h) => _activations.SwiGluForward(gateUp, h);

    /// <inheritdoc />
    /// <remarks>BFloat16 or Float32 tensors, all of one type; F a multiple of 8; 16-byte aligned.</remarks>
    public void SwiGluBackward(Tensor gateUp, Tensor dh, Tensor dGateUp) => _activations.SwiGluBackward(gateUp, dh, dGateUp);

    /// <inheritdoc />
    /// <remarks>BFloat16 or Float32 tensors of one type, 16-byte aligned; y may be x.</remarks>
    public void GeluForward(Tensor x, Tensor y) => _activations.GeluForward(x, y);

    /// <inheritdoc />
    /// <remarks>BFloat16 or Float32 tensors of one type, 16-byte aligned; dx may be dy.</remarks>
    public void GeluBackward(Tensor x, Tensor dy, Tensor dx) => _activations.GeluBackward(x, dy, dx);

    /// <inheritdoc />
    /// <remarks>
    /// Float32 or BFloat16 table, Float32 output. Token ids are checked on the device; one out of range is
    /// reported as <see cref="ArgumentOutOfRangeException"/> by the next synchronization or copy to the host
    /// (see <see cref="EmbeddingKernels"/>).
    /// </remarks>
    public void EmbeddingForward(Tensor tokens, Tensor table, Tensor output)
    {
        _embedding.Value.Forward(tokens, table, output);
        _tokenCheckPending = true;
    }

    /// <inheritdoc />
    /// <remarks>Float32 dOutput and dTable; a sort on the device fixes the order, no float atomics (see <see cref="EmbeddingKernels"/>).</remarks>
    public void EmbeddingBackward(Tensor tokens, Tensor dOutput, Tensor dTable)
    {
        _embedding.Value.Backward(tokens, dOutput, dTable);
        _tokenCheckPending = true;
    }

    /// <inheritdoc />
    /// <remarks>Float32 logits and gradient, 16-byte aligned; a target outside [0, vocabulary) other than −1 gives a NaN row.</remarks>
    public void CrossEntropy(Tensor logits, int vocabulary, Tensor targets, Tensor losses, Tensor dLogits, float lossScale) =>
        _crossEntropy.Forward(logits, vocabulary, targets, losses, dLogits, lossScale);

    /// <inheritdoc />
    public void Dispose()
    {
        // Queued kernels may still use the scratch freed below.
        DrainBeforeRelease();
        Workspace.Dispose();
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases the subclass's resources.</summary>
    protected abstract void Dispose(bool disposing);

    /// <summary>Waits for the queued work before <see cref="Dispose()"/> frees memory; must not throw (the device may have failed).</summary>
    protected virtual void DrainBeforeRelease()
    {
    }

    /// <summary>Marks the deferred device-side checks as due, after work the launchers did not issue themselves (a graph replay).</summary>
    protected void ExpectDeferredChecks() => _tokenCheckPending = true;

    /// <summary>
    /// Throws for errors that kernels recorded in device memory rather than stop the stream for (deferred checks): reads
    /// the embedding's error word once after any number of embedding ops, here where the host waits for the device anyway.
    /// </summary>
    private void ThrowRecordedErrors()
    {
        if (!_tokenCheckPending) return;
        _tokenCheckPending = false;
        var errors = Workspace.Find(KernelScratch.TokenErrors);
        if (errors.IsEmpty) return;
        Span<int> word = stackalloc int[EmbeddingKernels.ErrorWords];
        CopyToHostCore(errors.Slice(0, EmbeddingKernels.ErrorWords), word);
        if (EmbeddingKernels.OutOfRange(word) is not { } error) return;
        // Cleared for the next check (queued after everything that may have written it).
        Clear(errors);
        throw error;
    }
}
