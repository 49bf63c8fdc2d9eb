using Keel.Cuda.Driver;
using Keel.Native.Devices;
using Keel.Native.Numerics;
using Keel.Native.Reference;

namespace Keel.Native.Kernels.Launchers;

/// <summary>Launches <c>kernels/optimizer.cu</c>: the global gradient norm with its clip factor, and fused AdamW.</summary>
internal sealed class OptimizerKernels
{
    /// <summary>The one specialization of optimizer.cu.</summary>
    public static KernelSpec Spec { get; } = new("optimizer.cu");

    /// <summary>The most partial sums the norm uses: its scratch (<see cref="KernelScratch.GradientNormPartials"/>) holds this many floats.</summary>
    public const int MaxPartials = 1024;

    private const int Threads = 256;
    private readonly KernelWorkspace _workspace;
    private readonly KernelFunction _sumsqPartial, _clipFactor, _adamw;
    private readonly int _maxBlocks;

    /// <summary>Loads the kernels on <paramref name="runtime"/>; the norm's partial sums live in <paramref name="workspace"/>.</summary>
    public OptimizerKernels(IKernelRuntime runtime, KernelWorkspace workspace)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        _workspace = workspace;
        _sumsqPartial = runtime.Load(Spec, "keel_optimizer_sumsq_partial");
        _clipFactor = runtime.Load(Spec, "keel_optimizer_clip_factor");
        _adamw = runtime.Load(Spec, "keel_optimizer_adamw");
        _maxBlocks = runtime.MultiprocessorCount * 8;
    }

    /// <summary>
    /// result[0] = ‖gradients‖₂, result[1] = the clip factor min(1, maxNorm / (norm + 1e-6)) (1 when
    /// <paramref name="maxNorm"/> ≤ 0). Deterministic: the partial sums' layout depends only on the length.
    /// </summary>
    public void GradientNorm(Tensor gradients, float maxNorm, Tensor result)
    {
        Require.DType(gradients, DType.Float32);
        Require.DType(result, DType.Float32);
        Require.Positive(gradients.Length);
        Require.Aligned(gradients, 16);
        Require.Length(result, 2);
        var partials = _workspace.Get(KernelScratch.GradientNormPartials, DType.Float32, MaxPartials);
        var n = gradients.Length;
        var blocks = (int)Math.Clamp((n / 4 + Threads - 1) / Threads, 1, MaxPartials);
        _sumsqPartial.Launch(LaunchShapes.Blocks(blocks, Threads), [gradients, n, partials], new KernelCost(4.0 * n, 2.0 * n));
        _clipFactor.Launch(LaunchShapes.Blocks(1, Threads), [partials, blocks, maxNorm, result], new KernelCost(4.0 * blocks + 8, blocks));
    }

    /// <summary>
    /// One AdamW step (step number <paramref name="step"/> from 1) over a flat Float32 parameter buffer, the
    /// gradients scaled by clip[1] (as written by <see cref="GradientNorm"/>), also writing the BFloat16 copy
    /// of the updated parameters when <paramref name="parametersBf16"/> is not empty.
    /// </summary>
    public void AdamW(AdamWOptions options, int step, float learningRate, Tensor parameters, Tensor gradients,
                      Tensor firstMoment, Tensor secondMoment, Tensor parametersBf16, Tensor clip)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(step, 1);
        if (!float.IsFinite(learningRate) || learningRate < 0)
            throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "The learning rate must be finite and not negative.");
        var n = parameters.Length;
        Require.Positive(n);
        CheckState(parameters, n);
        CheckState(gradients, n);
        CheckState(firstMoment, n);
        CheckState(secondMoment, n);
        if (!parametersBf16.IsEmpty)
        {
            Require.DType(parametersBf16, DType.BFloat16);
            Require.Length(parametersBf16, n);
            Require.Aligned(parametersBf16, 16);
        }
        Require.DType(clip, DType.Float32);
        Require.Length(clip, 2);

        var c1 = (float)(1 - Math.Pow(options.Beta1, step));
        var c2 = (float)(1 - Math.Pow(options.Beta2, step));
        var blocks = Math.Clamp((n / 4 + Threads - 1) / Threads, 1, _maxBlocks);
        // Reads p, g, m, v and writes p, m, v (fp32), plus the bf16 copy when asked; 17 FLOPs an element (kernels/optimizer.cu).
        _adamw.Launch(LaunchShapes.Blocks(blocks, Threads),
                      [parameters, gradients, firstMoment, secondMoment, parametersBf16, n, learningRate, options.Beta1, options.Beta2, c1, c2, options.Epsilon, options.WeightDecay, clip],
                      new KernelCost(n * (28.0 + (parametersBf16.IsEmpty ? 0 : 2)), 17.0 * n));
    }

    private static void CheckState(Tensor state, long n, [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(state))] string? name = null)
    {
        Require.DType(state, DType.Float32, name);
        Require.Length(state, n, name);
        Require.Aligned(state, 16, name);
    }
}
