namespace Keel.Native.Tests.Support;

/// <summary>A device that passes every call to a <see cref="CpuDevice"/>; tests override the calls they need to change.</summary>
internal class ForwardingDevice : IDevice
{
    protected CpuDevice Inner { get; } = new();

    public DeviceKind Kind => Inner.Kind;
    public string Name => "forwarding " + Inner.Name;
    public virtual IKernelRuntime? Kernels => Inner.Kernels;
    public virtual DeviceMemoryInfo? QueryMemory() => Inner.QueryMemory();
    public virtual IGraphCapture? GraphCapture => Inner.GraphCapture;
    public virtual Keel.Cuda.Driver.CudaStream? NativeStream => Inner.NativeStream;
    public virtual KernelProfiler CreateProfiler() => Inner.CreateProfiler();
    public virtual DeviceBuffer Allocate(DType dtype, TensorShape shape) => Inner.Allocate(dtype, shape);
    public virtual void CopyFromHost<T>(ReadOnlySpan<T> source, Tensor destination) where T : unmanaged => Inner.CopyFromHost(source, destination);
    public virtual void CopyToHost<T>(Tensor source, Span<T> destination) where T : unmanaged => Inner.CopyToHost(source, destination);
    public virtual void Copy(Tensor source, Tensor destination) => Inner.Copy(source, destination);
    public virtual void Clear(Tensor destination) => Inner.Clear(destination);
    public virtual void Synchronize() => Inner.Synchronize();
    public virtual void Convert(Tensor source, Tensor destination) => Inner.Convert(source, destination);

    public virtual void Gemm(Tensor a, bool transposeA, Tensor b, bool transposeB, Tensor c, float alpha = 1f, float beta = 0f) =>
        Inner.Gemm(a, transposeA, b, transposeB, c, alpha, beta);

    public virtual void ResidualNormForward(ResidualNormOptions options, Tensor x, Tensor f, NormWeights outNorm, NormWeights inNorm, Tensor y, Tensor z, NormStatistics statistics) =>
        Inner.ResidualNormForward(options, x, f, outNorm, inNorm, y, z, statistics);

    public virtual void ResidualNormBackward(ResidualNormOptions options, Tensor x, Tensor f, Tensor y, NormWeights outNorm, NormWeights inNorm, NormStatistics statistics,
                                             Tensor dy, Tensor dz, Tensor dx, Tensor df, NormWeights outNormGradients, NormWeights inNormGradients) =>
        Inner.ResidualNormBackward(options, x, f, y, outNorm, inNorm, statistics, dy, dz, dx, df, outNormGradients, inNormGradients);

    public virtual void RopeForward(Tensor x, Tensor output, float theta = Rope.DefaultTheta) => Inner.RopeForward(x, output, theta);
    public virtual void RopeBackward(Tensor dOutput, Tensor dx, float theta = Rope.DefaultTheta) => Inner.RopeBackward(dOutput, dx, theta);
    public virtual void AttentionForward(AttentionOptions options, Tensor q, Tensor k, Tensor v, Tensor output, Tensor logSumExp) => Inner.AttentionForward(options, q, k, v, output, logSumExp);

    public virtual void AttentionBackward(AttentionOptions options, Tensor q, Tensor k, Tensor v, Tensor output, Tensor logSumExp, Tensor dOutput, Tensor dq, Tensor dk, Tensor dv) =>
        Inner.AttentionBackward(options, q, k, v, output, logSumExp, dOutput, dq, dk, dv);

    public virtual void SwiGluForward(Tensor gateUp, Tensor h) => Inner.SwiGluForward(gateUp, h);
    public virtual void SwiGluBackward(Tensor gateUp, Tensor dh, Tensor dGateUp) => Inner.SwiGluBackward(gateUp, dh, dGateUp);
    public virtual void GeluForward(Tensor x, Tensor y) => Inner.GeluForward(x, y);
    public virtual void GeluBackward(Tensor x, Tensor dy, Tensor dx) => Inner.GeluBackward(x, dy, dx);
    public virtual void EmbeddingForward(Tensor tokens, Tensor table, Tensor output) => Inner.EmbeddingForward(tokens, table, output);
    public virtual void EmbeddingBackward(Tensor tokens, Tensor dOutput, Tensor dTable) => Inner.EmbeddingBackward(tokens, dOutput, dTable);
    public virtual void CrossEntropy(Tensor logits, int vocabulary, Tensor targets, Tensor losses, Tensor dLogits, float lossScale) => Inner.CrossEntropy(logits, vocabulary, targets, losses, dLogits, lossScale);
    public virtual void GradientNorm(Tensor gradients, float maxNorm, Tensor result) => Inner.GradientNorm(gradients, maxNorm, result);

    public virtual void AdamW(AdamWOptions options, int step, float learningRate, Tensor parameters, Tensor gradients, Tensor firstMoment, Tensor secondMoment, Tensor parametersBf16, Tensor clip) =>
        Inner.AdamW(options, step, learningRate, parameters, gradients, firstMoment, secondMoment, parametersBf16, clip);

    public virtual void Dispose() => Inner.Dispose();
}
