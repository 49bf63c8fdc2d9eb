using System.Numerics;
using System.Runtime.InteropServices;
using Keel.Native.Kernels;
using Keel.Native.Numerics;
using Keel.Native.Reference;

namespace Keel.Native.Devices.Cpu;

/// <summary>
/// The reference device: tensors in host memory, every op computed by <see cref="Keel.Native.Reference"/> on
/// the calling thread (the GEMM on every core). Synchronous, deterministic, and exact to fp32 (or fp64 when
/// any tensor is Float64), so it is the oracle the GPU devices are tested against, and it carries CPU training.
/// </summary>
public sealed class CpuDevice : IDevice
{
    /// <inheritdoc />
    public DeviceKind Kind => DeviceKind.Cpu;

    /// <inheritdoc />
    public string Name => $"cpu ({Environment.ProcessorCount} cores, {RuntimeInformation.ProcessArchitecture})";

    /// <inheritdoc />
    /// <remarks>None: the ops are the C# reference, not kernels.</remarks>
    public IKernelRuntime? Kernels => null;

    /// <inheritdoc />
    /// <remarks>Null: tensors live in host memory.</remarks>
    public DeviceMemoryInfo? QueryMemory() => null;

    /// <inheritdoc />
    /// <remarks>None: every op runs when it is called.</remarks>
    public IGraphCapture? GraphCapture => null;

    /// <inheritdoc />
    /// <remarks>None: tensors live in host memory.</remarks>
    public Keel.Cuda.Driver.CudaStream? NativeStream => null;

    /// <inheritdoc />
    /// <remarks>The host clock: every op has finished when it returns.</remarks>
    public KernelProfiler CreateProfiler() => KernelProfiler.WallClock();

    /// <inheritdoc />
    public DeviceBuffer Allocate(DType dtype, TensorShape shape) =>
        new(this, HostAllocation.Allocate(shape.ElementCount * dtype.SizeOf()), dtype, shape);

    /// <inheritdoc />
    public void CopyFromHost<T>(ReadOnlySpan<T> source, Tensor destination) where T : unmanaged
    {
        HostMemory.CheckCopy<T>(source.Length, destination, nameof(destination));
        source.CopyTo(HostMemory.Span<T>(destination));
    }

    /// <inheritdoc />
    public void CopyToHost<T>(Tensor source, Span<T> destination) where T : unmanaged
    {
        HostMemory.CheckCopy<T>(destination.Length, source, nameof(source));
        HostMemory.Span<T>(source).CopyTo(destination);
    }

    /// <inheritdoc />
    public void Copy(Tensor source, Tensor destination)
    {
        Require.DType(destination, source.DType);
        Require.Length(destination, source.Length);
        HostMemory.Bytes(source).CopyTo(HostMemory.Bytes(destination));
    }

    /// <inheritdoc />
    public void Clear(Tensor destination) => HostMemory.Bytes(destination).Clear();

    /// <inheritdoc />
    public void Synchronize()
    {
    }

    /// <inheritdoc />
    public void Convert(Tensor source, Tensor destination)
    {
        Require.Length(destination, source.Length);
        if (source.DType == DType.Float64 || destination.DType == DType.Float64) ConvertIn<double>(source, destination);
        else ConvertIn<float>(source, destination);
    }

    private static void ConvertIn<T>(Tensor source, Tensor destination) where T : unmanaged, IFloatingPointIeee754<T>
    {
        using var staging = new HostStaging<T>();
        staging.In(source).CopyTo(staging.Out(destination));
        staging.Commit();
    }

    /// <inheritdoc />
    public void Gemm(Tensor a, bool transposeA, Tensor b, bool transposeB, Tensor c, float alpha = 1f, float beta = 0f)
    {
        var (m, n, k) = GemmShape.Of(a, transposeA, b, transposeB, c);
        switch (a.DType, b.DType, c.DType)
        {
            case (DType.Float32, DType.Float32, DType.Float32):
                Reference.Gemm.Multiply(transposeA, transposeB, m, n, k, alpha, HostMemory.Span<float>(a), HostMemory.Span<float>(b), beta, HostMemory.Span<float>(c));
                break;
            case (DType.BFloat16, DType.BFloat16, DType.Float32):
                Reference.Gemm.Multiply(transposeA, transposeB, m, n, k, alpha, HostMemory.Span<BFloat16>(a), HostMemory.Span<BFloat16>(b), beta, HostMemory.Span<float>(c));
                break;
            case (DType.BFloat16, DType.BFloat16, DType.BFloat16):
                Reference.Gemm.Multiply(transposeA, transposeB, m, n, k, alpha, HostMemory.Span<BFloat16>(a), HostMemory.Span<BFloat16>(b), beta, HostMemory.Span<BFloat16>(c));
                break;
            case (DType.Float64, _, _) or (_, DType.Float64, _) or (_, _, DType.Float64):
                using (var staging = new HostStaging<double>())
                {
                    Reference.Gemm.MultiplyNaive(transposeA, transposeB, m, n, k, (double)alpha, staging.In(a), staging.In(b), beta, staging.InOut(c));
                    staging.Commit();
                }
                break;
            default:
                throw new ArgumentException($"No GEMM for {a.DType} x {b.DType} -> {c.DType}; operands share a type and the output is Float32 (or BFloat16 for BFloat16 operands).", nameof(c));
        }
    }

    /// <inheritdoc />
    public void ResidualNormForward(ResidualNormOptions options, Tensor x, Tensor f, NormWeights outNorm, NormWeights inNorm,
                                    Tensor y, Tensor z, NormStatistics statistics)
    {
        if (InDouble(x, f, y, z, outNorm.Gain)) ResidualNormForward<double>(options, x, f, outNorm, inNorm, y, z, statistics);
        else ResidualNormForward<float>(options, x, f, outNorm, inNorm, y, z, statistics);
    }

    private static void ResidualNormForward<T>(ResidualNormOptions options, Tensor x, Tensor f, NormWeights outNorm, NormWeights inNorm,
                                               Tensor y, Tensor z, NormStatistics s) where T : unmanaged, IFloatingPointIeee754<T>
    {
        ArgumentNullException.ThrowIfNull(options);
        var (rows, hidden) = RowsAndHidden(x);
        using var staging = new HostStaging<T>();
        var ySpan = staging.Out(y);
        Reference.ResidualNorm.Forward(options, rows, hidden, staging.In(x), staging.In(f),
            staging.In(outNorm.Gain), staging.In(outNorm.Bias), staging.In(inNorm.Gain), staging.In(inNorm.Bias),
            ySpan, options.InputNorm ? staging.Out(z) : default,
            staging.Out(s.MeanOut), staging.Out(s.RstdOut), staging.Out(s.MeanIn), staging.Out(s.RstdIn));
        if (!options.InputNorm && !z.IsEmpty)
        {
            Require.Length(z, x.Length);
            ySpan.CopyTo(staging.Out(z));
        }
        staging.Commit();
    }

    /// <inheritdoc />
    public void ResidualNormBackward(ResidualNormOptions options, Tensor x, Tensor f, Tensor y, NormWeights outNorm, NormWeights inNorm,
                                     NormStatistics statistics, Tensor dy, Tensor dz, Tensor dx, Tensor df,
                                     NormWeights outNormGradients, NormWeights inNormGradients)
    {
        if (InDouble(x, f, y, dx, outNorm.Gain))
            ResidualNormBackward<double>(options, x, f, y, outNorm, inNorm, statistics, dy, dz, dx, df, outNormGradients, inNormGradients);
        else
            ResidualNormBackward<float>(options, x, f, y, outNorm, inNorm, statistics, dy, dz, dx, df, outNormGradients, inNormGradients);
    }

    private static void ResidualNormBackward<T>(ResidualNormOptions options, Tensor x, Tensor f, Tensor y, NormWeights outNorm, NormWeights inNorm,
                                                NormStatistics s, Tensor dy, Tensor dz, Tensor dx, Tensor df,
                                                NormWeights dOut, NormWeights dIn) where T : unmanaged, IFloatingPointIeee754<T>
    {
        ArgumentNullException.ThrowIfNull(options);
        var (rows, hidden) = RowsAndHidden(x);
        using var staging = new HostStaging<T>();
        var dySpan = staging.In(dy);
        if (!options.InputNorm && !dz.IsEmpty)
        {
            // Without N_in, z is a copy of y: its gradient joins the residual path's.
            Require.Length(dz, x.Length);
            var sum = staging.Scratch((int)x.Length);
            staging.In(dz).CopyTo(sum);
            if (!dySpan.IsEmpty)
                for (var i = 0; i < sum.Length; i++) sum[i] += dySpan[i];
            dySpan = sum;
        }
        Reference.ResidualNorm.Backward(options, rows, hidden, staging.In(x), staging.In(f), staging.In(y),
            staging.In(outNorm.Gain), staging.In(inNorm.Gain),
            staging.In(s.MeanOut), staging.In(s.RstdOut), staging.In(s.MeanIn), staging.In(s.RstdIn),
            dySpan, options.InputNorm ? staging.In(dz) : default, staging.Out(dx), staging.Out(df),
            staging.InOut(dOut.Gain), staging.InOut(dOut.Bias), staging.InOut(dIn.Gain), staging.InOut(dIn.Bias));
        staging.Commit();
    }

    /// <inheritdoc />
    public void RopeForward(Tensor x, Tensor output, float theta = Rope.DefaultTheta) => RopeRotate(x, output, theta, forward: true);

    /// <inheritdoc />
    public void RopeBackward(Tensor dOutput, Tensor dx, float theta = Rope.DefaultTheta) => RopeRotate(dOutput, dx, theta, forward: false);

    private static void RopeRotate(Tensor input, Tensor output, float theta, bool forward)
    {
        if (InDouble(input, output)) RopeRotate<double>(input, output, theta, forward);
        else RopeRotate<float>(input, output, theta, forward);
    }

    private static void RopeRotate<T>(Tensor input, Tensor output, float theta, bool forward) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (input.Shape.Rank != 4) throw new ArgumentException($"RoPE input has shape {input.Shape}; [batch, sequence, heads, headDim] expected.", nameof(input));
        Require.Shape(output, input.Shape);
        int batch = (int)input.Shape[0], sequence = (int)input.Shape[1], heads = (int)input.Shape[2], headDim = (int)input.Shape[3];
        using var staging = new HostStaging<T>();
        var source = staging.In(input);
        var destination = staging.Out(output);
        if (forward) Rope.Forward(batch, sequence, heads, headDim, source, destination, theta);
        else Rope.Backward(batch, sequence, heads, headDim, source, destination, theta);
        staging.Commit();
    }

    /// <inheritdoc />
    public void AttentionForward(AttentionOptions options, Tensor q, Tensor k, Tensor v, Tensor output, Tensor logSumExp)
    {
        if (InDouble(q, k, v, output)) AttentionForward<double>(options, q, k, v, output, logSumExp);
        else AttentionForward<float>(options, q, k, v, output, logSumExp);
    }

    private static void AttentionForward<T>(AttentionOptions options, Tensor q, Tensor k, Tensor v, Tensor output, Tensor lse)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        using var staging = new HostStaging<T>();
        Attention.Forward(options, staging.In(q), staging.In(k), staging.In(v), staging.Out(output), staging.Out(lse));
        staging.Commit();
    }

    /// <inheritdoc />
    public void AttentionBackward(AttentionOptions options, Tensor q, Tensor k, Tensor v, Tensor output, Tensor logSumExp,
                                  Tensor dOutput, Tensor dq, Tensor dk, Tensor dv)
    {
        if (InDouble(q, k, v, output, dq)) AttentionBackward<double>(options, q, k, v, output, logSumExp, dOutput, dq, dk, dv);
        else AttentionBackward<float>(options, q, k, v, output, logSumExp, dOutput, dq, dk, dv);
    }

    private static void AttentionBackward<T>(AttentionOptions options, Tensor q, Tensor k, Tensor v, Tensor output, Tensor lse,
                                             Tensor dOutput, Tensor dq, Tensor dk, Tensor dv) where T : unmanaged, IFloatingPointIeee754<T>
    {
        using var staging = new HostStaging<T>();
        Attention.Backward(options, staging.In(q), staging.In(k), staging.In(v), staging.In(output), staging.In(lse),
            staging.In(dOutput), staging.Out(dq), staging.Out(dk), staging.Out(dv));
        staging.Commit();
    }

    /// <inheritdoc />
    public void SwiGluForward(Tensor gateUp, Tensor h)
    {
        if (InDouble(gateUp, h)) SwiGluForward<double>(gateUp, h);
        else SwiGluForward<float>(gateUp, h);
    }

    private static void SwiGluForward<T>(Tensor gateUp, Tensor h) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var (rows, ffn) = SwiGluShape(gateUp, h);
        using var staging = new HostStaging<T>();
        SwiGlu.Forward(rows, ffn, staging.In(gateUp), staging.Out(h));
        staging.Commit();
    }

    /// <inheritdoc />
    public void SwiGluBackward(Tensor gateUp, Tensor dh, Tensor dGateUp)
    {
        if (InDouble(gateUp, dh, dGateUp)) SwiGluBackward<double>(gateUp, dh, dGateUp);
        else SwiGluBackward<float>(gateUp, dh, dGateUp);
    }

    private static void SwiGluBackward<T>(Tensor gateUp, Tensor dh, Tensor dGateUp) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var (rows, ffn) = SwiGluShape(gateUp, dh);
        using var staging = new HostStaging<T>();
        SwiGlu.Backward(rows, ffn, staging.In(gateUp), staging.In(dh), staging.Out(dGateUp));
        staging.Commit();
    }

    /// <inheritdoc />
    public void GeluForward(Tensor x, Tensor y)
    {
        if (InDouble(x, y)) GeluForward<double>(x, y);
        else GeluForward<float>(x, y);
    }

    private static void GeluForward<T>(Tensor x, Tensor y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        using var staging = new HostStaging<T>();
        Gelu.Forward(staging.In(x), staging.Out(y));
        staging.Commit();
    }

    /// <inheritdoc />
    public void GeluBackward(Tensor x, Tensor dy, Tensor dx)
    {
        if (InDouble(x, dy, dx)) GeluBackward<double>(x, dy, dx);
        else GeluBackward<float>(x, dy, dx);
    }

    private static void GeluBackward<T>(Tensor x, Tensor dy, Tensor dx) where T : unmanaged, IFloatingPointIeee754<T>
    {
        using var staging = new HostStaging<T>();
        Gelu.Backward(staging.In(x), staging.In(dy), staging.Out(dx));
        staging.Commit();
    }

    /// <inheritdoc />
    public void EmbeddingForward(Tensor tokens, Tensor table, Tensor output)
    {
        if (InDouble(table, output)) EmbeddingForward<double>(tokens, table, output);
        else EmbeddingForward<float>(tokens, table, output);
    }

    private static void EmbeddingForward<T>(Tensor tokens, Tensor table, Tensor output) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var (vocab, dim) = RowsAndHidden(table);
        using var staging = new HostStaging<T>();
        Embedding.Forward(vocab, dim, HostMemory.Span<int>(tokens), staging.In(table), staging.Out(output));
        staging.Commit();
    }

    /// <inheritdoc />
    public void EmbeddingBackward(Tensor tokens, Tensor dOutput, Tensor dTable)
    {
        if (InDouble(dOutput, dTable)) EmbeddingBackward<double>(tokens, dOutput, dTable);
        else EmbeddingBackward<float>(tokens, dOutput, dTable);
    }

    private static void EmbeddingBackward<T>(Tensor tokens, Tensor dOutput, Tensor dTable) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var (vocab, dim) = RowsAndHidden(dTable);
        using var staging = new HostStaging<T>();
        Embedding.Backward(vocab, dim, HostMemory.Span<int>(tokens), staging.In(dOutput), staging.InOut(dTable));
        staging.Commit();
    }

    /// <inheritdoc />
    public void CrossEntropy(Tensor logits, int vocabulary, Tensor targets, Tensor losses, Tensor dLogits, float lossScale)
    {
        if (InDouble(logits, losses)) CrossEntropy<double>(logits, vocabulary, targets, losses, dLogits, lossScale);
        else CrossEntropy<float>(logits, vocabulary, targets, losses, dLogits, lossScale);
    }

    private static void CrossEntropy<T>(Tensor logits, int vocabulary, Tensor targets, Tensor losses, Tensor dLogits, float lossScale)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var (tokens, stride) = RowsAndHidden(logits);
        Require.CountedColumns(vocabulary, stride);
        using var staging = new HostStaging<T>();
        var logitSpan = staging.In(logits);
        var targetSpan = HostMemory.Span<int>(targets);
        Reference.CrossEntropy.Forward(tokens, vocabulary, stride, logitSpan, targetSpan, staging.Out(losses));
        if (!dLogits.IsEmpty)
        {
            var dLoss = staging.Scratch(tokens);
            dLoss.Fill(T.CreateTruncating(lossScale));
            // dLogits may alias logits: the reference reads each row before overwriting it.
            Reference.CrossEntropy.Backward(tokens, vocabulary, stride, logitSpan, targetSpan, dLoss, staging.Out(dLogits));
        }
        staging.Commit();
    }

    /// <inheritdoc />
    public void GradientNorm(Tensor gradients, float maxNorm, Tensor result)
    {
        Require.Length(result, 2);
        using var staging = new HostStaging<double>();
        var norm = Math.Sqrt(GradNorm.SumOfSquares(staging.In(gradients)));
        var output = staging.Out(result);
        output[0] = norm;
        output[1] = maxNorm > 0 ? GradNorm.ClipFactor(norm, maxNorm) : 1;
        staging.Commit();
    }

    /// <inheritdoc />
    public void AdamW(AdamWOptions options, int step, float learningRate, Tensor parameters, Tensor gradients,
                      Tensor firstMoment, Tensor secondMoment, Tensor parametersBf16, Tensor clip)
    {
        Require.Length(clip, 2);
        if (InDouble(parameters, gradients, firstMoment, secondMoment)) AdamW<double>(options, step, learningRate, parameters, gradients, firstMoment, secondMoment, parametersBf16, clip);
        else AdamW<float>(options, step, learningRate, parameters, gradients, firstMoment, secondMoment, parametersBf16, clip);
    }

    private static void AdamW<T>(AdamWOptions options, int step, float learningRate, Tensor parameters, Tensor gradients,
                                 Tensor m, Tensor v, Tensor parametersBf16, Tensor clip) where T : unmanaged, IFloatingPointIeee754<T>
    {
        using var staging = new HostStaging<T>();
        var scale = float.CreateTruncating(staging.In(clip)[1]);
        Reference.AdamW.Step(options, step, learningRate, scale, staging.InOut(parameters), staging.In(gradients),
            staging.InOut(m), staging.InOut(v), parametersBf16.IsEmpty ? default : HostMemory.Span<BFloat16>(parametersBf16));
        staging.Commit();
    }

    /// <inheritdoc />
    public void Dispose()
    {
    }

    private static bool InDouble(params ReadOnlySpan<Tensor> tensors)
    {
        foreach (var tensor in tensors)
            if (tensor.DType == DType.Float64 && !tensor.IsEmpty) return true;
        return false;
    }

    private static (int Rows, int Columns) RowsAndHidden(Tensor tensor, [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(tensor))] string? name = null)
    {
        if (tensor.Shape.Rank < 2) throw new ArgumentException($"{name} has shape {tensor.Shape}; a matrix [rows, columns] is expected.", name);
        return (checked((int)tensor.Shape.Rows), checked((int)tensor.Shape.Last));
    }

    private static (int Rows, int Ffn) SwiGluShape(Tensor gateUp, Tensor h)
    {
        var (rows, twice) = RowsAndHidden(gateUp);
        if (twice % 2 != 0) throw new ArgumentException($"gateUp has {twice} columns; gate and up halves need an even count.", nameof(gateUp));
        Require.Length(h, (long)rows * (twice / 2));
        return (rows, twice / 2);
    }
}
