using Keel.Native.Kernels;
using Keel.Native.Numerics;
using Keel.Native.Reference;

namespace Keel.Native.Devices;

/// <summary>
/// A device that times every op of another one by name (CUDA events on the GPU, the host clock on the CPU and
/// the emulator) with what it must move and, for GEMMs and attention, compute: the view behind
/// <c>keel train --profile</c>. Bytes are those of every tensor the op reads or writes; GEMM FLOPs are 2·m·n·k;
/// causal attention counts as FlashAttention does (forward 2·B·S²·D·H, backward 2.5 times that).
/// Memory operations and copies to and from the host are not timed, nor anything while <see cref="Paused"/>.
/// On devices that launch kernels it also installs <see cref="KernelLaunches"/> as the kernel runtime's profiler, so
/// each kernel launch is timed too, with the bytes and FLOPs its launcher reports.
/// <para>
/// It answers for the device it wraps (<see cref="Kernels"/>, <see cref="QueryMemory"/>), except that it offers no graph
/// capture, on purpose: a replayed graph runs the step's ops without calling this device, so they would go untimed. A
/// profiled run therefore launches every op, and its step times are those of eager launches.
/// </para>
/// </summary>
/// <example>
/// <code>
/// using var device = new ProfiledDevice(new CpuDevice());
/// // ... train or run ops on device ...
/// device.Profile.Write(Console.Out, totalMilliseconds: stepMilliseconds);
/// </code>
/// </example>
public sealed class ProfiledDevice : IDevice
{
    private readonly IDevice _inner;
    private readonly IKernelRuntime? _runtime;

    /// <summary>Times the ops of <paramref name="inner"/>, which this device owns from now on.</summary>
    public ProfiledDevice(IDevice inner)
    {
        ArgumentNullException.ThrowIfNull(inner);
        _inner = inner;
        Profile = inner.CreateProfiler();
        _runtime = inner.Kernels;
        if (_runtime is not null)
        {
            KernelLaunches = inner.CreateProfiler();
            _runtime.Profiler = KernelLaunches;
        }
    }

    /// <summary>The kernel launches' timings on devices that launch kernels; null on the CPU device.</summary>
    public KernelProfiler? KernelLaunches { get; }

    /// <summary>While true, ops run untimed (evaluation between steps, for example).</summary>
    public bool Paused
    {
        get => _paused;
        set
        {
            _paused = value;
            _runtime?.Profiler = value ? null : KernelLaunches;
        }
    }

    private bool _paused;

    /// <summary>The timings so far.</summary>
    public KernelProfiler Profile { get; }

    /// <inheritdoc />
    public DeviceKind Kind => _inner.Kind;

    /// <inheritdoc />
    public string Name => _inner.Name + " (profiled)";

    /// <inheritdoc />
    public IKernelRuntime? Kernels => _runtime;

    /// <inheritdoc />
    public DeviceMemoryInfo? QueryMemory() => _inner.QueryMemory();

    /// <inheritdoc />
    /// <remarks>None, whatever the inner device offers: a replayed graph would bypass the timing of each op.</remarks>
    public IGraphCapture? GraphCapture => null;

    /// <inheritdoc />
    /// <remarks>The inner device's: work queued there beside the ops (collectives) is not timed.</remarks>
    public Keel.Cuda.Driver.CudaStream? NativeStream => _inner.NativeStream;

    /// <inheritdoc />
    public KernelProfiler CreateProfiler() => _inner.CreateProfiler();

    /// <inheritdoc />
    public DeviceBuffer Allocate(DType dtype, TensorShape shape) => _inner.Allocate(dtype, shape);

    /// <inheritdoc />
    public void ReserveScratch(KernelScratch scratch, long bytes) => _inner.ReserveScratch(scratch, bytes);

    /// <inheritdoc />
    public void CopyFromHost<T>(ReadOnlySpan<T> source, Tensor destination) where T : unmanaged => _inner.CopyFromHost(source, destination);

    /// <inheritdoc />
    public void CopyToHost<T>(Tensor source, Span<T> destination) where T : unmanaged => _inner.CopyToHost(source, destination);

    /// <inheritdoc />
    public void Copy(Tensor source, Tensor destination) => _inner.Copy(source, destination);

    /// <inheritdoc />
    public void Clear(Tensor destination)
    {
        var t = Begin();
        _inner.Clear(destination);
        End(t, "clear", Bytes(destination));
    }

    /// <inheritdoc />
    public void Synchronize() => _inner.Synchronize();

    /// <inheritdoc />
    public void Convert(Tensor source, Tensor destination)
    {
        var t = Begin();
        _inner.Convert(source, destination);
        End(t, "convert", Bytes(source, destination));
    }

    /// <inheritdoc />
    public void Gemm(Tensor a, bool transposeA, Tensor b, bool transposeB, Tensor c, float alpha = 1f, float beta = 0f)
    {
        var (m, n, k) = GemmShape.Of(a, transposeA, b, transposeB, c);
        var t = Begin();
        _inner.Gemm(a, transposeA, b, transposeB, c, alpha, beta);
        var name = $"gemm {(transposeA ? 'T' : 'N')}{(transposeB ? 'T' : 'N')} {a.DType.KernelTypeNameOrSelf()}->{c.DType.KernelTypeNameOrSelf()}";
        End(t, name, new KernelCost(a.ByteLength + b.ByteLength + c.ByteLength * (beta == 0 ? 1 : 2), 2.0 * m * n * k));
    }

    /// <inheritdoc />
    public void ResidualNormForward(ResidualNormOptions options, Tensor x, Tensor f, NormWeights outNorm, NormWeights inNorm, Tensor y, Tensor z, NormStatistics statistics)
    {
        var t = Begin();
        _inner.ResidualNormForward(options, x, f, outNorm, inNorm, y, z, statistics);
        End(t, "residual_norm forward", Bytes(x, f, y, z));
    }

    /// <inheritdoc />
    public void ResidualNormBackward(ResidualNormOptions options, Tensor x, Tensor f, Tensor y, NormWeights outNorm, NormWeights inNorm, NormStatistics statistics,
                                     Tensor dy, Tensor dz, Tensor dx, Tensor df, NormWeights outNormGradients, NormWeights inNormGradients)
    {
        var t = Begin();
        _inner.ResidualNormBackward(options, x, f, y, outNorm, inNorm, statistics, dy, dz, dx, df, outNormGradients, inNormGradients);
        End(t, "residual_norm backward", Bytes(x, f, y, dy, dz, dx, df));
    }

    /// <inheritdoc />
    public void RopeForward(Tensor x, Tensor output, float theta = Rope.DefaultTheta)
    {
        var t = Begin();
        _inner.RopeForward(x, output, theta);
        End(t, "rope forward", Bytes(x, output));
    }

    /// <inheritdoc />
    public void RopeBackward(Tensor dOutput, Tensor dx, float theta = Rope.DefaultTheta)
    {
        var t = Begin();
        _inner.RopeBackward(dOutput, dx, theta);
        End(t, "rope backward", Bytes(dOutput, dx));
    }

    /// <inheritdoc />
    public void AttentionForward(AttentionOptions options, Tensor q, Tensor k, Tensor v, Tensor output, Tensor logSumExp)
    {
        var t = Begin();
        _inner.AttentionForward(options, q, k, v, output, logSumExp);
        End(t, "attention forward", new KernelCost(Bytes(q, k, v, output, logSumExp).Bytes, options.ForwardFlops));
    }

    /// <inheritdoc />
    public void AttentionBackward(AttentionOptions options, Tensor q, Tensor k, Tensor v, Tensor output, Tensor logSumExp, Tensor dOutput, Tensor dq, Tensor dk, Tensor dv)
    {
        var t = Begin();
        _inner.AttentionBackward(options, q, k, v, output, logSumExp, dOutput, dq, dk, dv);
        End(t, "attention backward", new KernelCost(Bytes(q, k, v, output, logSumExp, dOutput, dq, dk, dv).Bytes, 2.5 * options.ForwardFlops));
    }

    /// <inheritdoc />
    public void SwiGluForward(Tensor gateUp, Tensor h)
    {
        var t = Begin();
        _inner.SwiGluForward(gateUp, h);
        End(t, "swiglu forward", Bytes(gateUp, h));
    }

    /// <inheritdoc />
    public void SwiGluBackward(Tensor gateUp, Tensor dh, Tensor dGateUp)
    {
        var t = Begin();
        _inner.SwiGluBackward(gateUp, dh, dGateUp);
        End(t, "swiglu backward", Bytes(gateUp, dh, dGateUp));
    }

    /// <inheritdoc />
    public void GeluForward(Tensor x, Tensor y)
    {
        var t = Begin();
        _inner.GeluForward(x, y);
        End(t, "gelu forward", Bytes(x, y));
    }

    /// <inheritdoc />
    public void GeluBackward(Tensor x, Tensor dy, Tensor dx)
    {
        var t = Begin();
        _inner.GeluBackward(x, dy, dx);
        End(t, "gelu backward", Bytes(x, dy, dx));
    }

    /// <inheritdoc />
    public void EmbeddingForward(Tensor tokens, Tensor table, Tensor output)
    {
        var t = Begin();
        _inner.EmbeddingForward(tokens, table, output);
        End(t, "embedding forward", Bytes(tokens, output, output));
    }

    /// <inheritdoc />
    public void EmbeddingBackward(Tensor tokens, Tensor dOutput, Tensor dTable)
    {
        var t = Begin();
        _inner.EmbeddingBackward(tokens, dOutput, dTable);
        End(t, "embedding backward", Bytes(tokens, dOutput, dOutput));
    }

    /// <inheritdoc />
    public void CrossEntropy(Tensor logits, int vocabulary, Tensor targets, Tensor losses, Tensor dLogits, float lossScale)
    {
        var t = Begin();
        _inner.CrossEntropy(logits, vocabulary, targets, losses, dLogits, lossScale);
        End(t, "cross_entropy", Bytes(logits, targets, losses, dLogits));
    }

    /// <inheritdoc />
    public void GradientNorm(Tensor gradients, float maxNorm, Tensor result)
    {
        var t = Begin();
        _inner.GradientNorm(gradients, maxNorm, result);
        End(t, "gradient_norm", new KernelCost(gradients.ByteLength, 2.0 * gradients.Length));
    }

    /// <inheritdoc />
    public void AdamW(AdamWOptions options, int step, float learningRate, Tensor parameters, Tensor gradients, Tensor firstMoment, Tensor secondMoment, Tensor parametersBf16, Tensor clip)
    {
        var t = Begin();
        _inner.AdamW(options, step, learningRate, parameters, gradients, firstMoment, secondMoment, parametersBf16, clip);
        End(t, "adamw", new KernelCost(Bytes(parameters, gradients, firstMoment, secondMoment, parameters, firstMoment, secondMoment, parametersBf16).Bytes, 12.0 * parameters.Length));
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _runtime?.Profiler = null;
        KernelLaunches?.Dispose();
        Profile.Dispose();
        _inner.Dispose();
    }

    private int Begin() => _paused ? -1 : Profile.Begin();

    private void End(int token, string name, in KernelCost cost)
    {
        if (token >= 0) Profile.End(token, name, cost);
    }

    private static KernelCost Bytes(params ReadOnlySpan<Tensor> tensors)
    {
        double bytes = 0;
        foreach (var tensor in tensors) bytes += tensor.ByteLength;
        return new KernelCost(bytes, 0);
    }
}

internal static class DTypeNames
{
    public static string KernelTypeNameOrSelf(this DType dtype) => dtype switch
    {
        DType.Float32 => "f32",
        DType.BFloat16 => "bf16",
        DType.Float64 => "f64",
        _ => dtype.ToString(),
    };
}
