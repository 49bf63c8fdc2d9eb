using System.Numerics;
using Keel.Native.Numerics;

namespace Keel.Native.Reference;

/// <summary>
/// AdamW's hyper-parameters (the learning rate, which follows a schedule, is an argument of each step). Every value
/// is checked when set (also through <c>with</c>).
/// </summary>
/// <param name="Beta1">Decay of the first moment, in [0, 1).</param>
/// <param name="Beta2">Decay of the second moment, in [0, 1).</param>
/// <param name="Epsilon">Added to sqrt(v̂); positive and finite.</param>
/// <param name="WeightDecay">Decoupled weight decay; not negative, finite.</param>
public sealed record AdamWOptions(float Beta1 = 0.9f, float Beta2 = 0.95f, float Epsilon = 1e-8f, float WeightDecay = 0.01f)
{
    /// <summary>Decay of the first moment, in [0, 1).</summary>
    public float Beta1 { get; init => field = CheckBeta(value, nameof(Beta1)); } = CheckBeta(Beta1, nameof(Beta1));

    /// <summary>Decay of the second moment, in [0, 1).</summary>
    public float Beta2 { get; init => field = CheckBeta(value, nameof(Beta2)); } = CheckBeta(Beta2, nameof(Beta2));

    /// <summary>Added to sqrt(v̂); positive and finite.</summary>
    public float Epsilon { get; init => field = CheckEpsilon(value); } = CheckEpsilon(Epsilon);

    /// <summary>Decoupled weight decay; not negative, finite.</summary>
    public float WeightDecay { get; init => field = CheckDecay(value); } = CheckDecay(WeightDecay);

    private static float CheckBeta(float value, string name) =>
        value is >= 0 and < 1 ? value : throw new ArgumentOutOfRangeException(name, value, $"{name} must be in [0, 1).");

    private static float CheckEpsilon(float value)
    {
        Guard.PositiveFinite(value, nameof(Epsilon));
        return value;
    }

    private static float CheckDecay(float value) =>
        float.IsFinite(value) && value >= 0 ? value : throw new ArgumentOutOfRangeException(nameof(WeightDecay), value, "WeightDecay must be finite and not negative.");
}

/// <summary>
/// One AdamW step, elementwise in fp64 (t = step, counted from 1):
/// <code>
/// g' = g·gradScale                       (gradScale carries the clip factor, see GradNorm.ClipFactor)
/// m  = β1·m + (1 − β1)·g'
/// v  = β2·v + (1 − β2)·g'²
/// m̂ = m / (1 − β1^t),   v̂ = v / (1 − β2^t)
/// p -= lr·(m̂ / (sqrt(v̂) + eps) + wd·p)
/// </code>
/// Optionally also writes a bf16 copy of the updated parameters (the GEMM operands), as the fused GPU kernel does.
/// Elements are independent; large updates run in blocks on every core.
/// </summary>
public static class AdamW
{
    /// <summary>Elements per block of the parallel update.</summary>
    private const int Block = 4096;

    /// <summary>Updates <paramref name="parameters"/>, <paramref name="m"/> and <paramref name="v"/> in place.</summary>
    /// <param name="options">β1, β2, eps, weight decay.</param>
    /// <param name="step">The step number t, from 1 (for the bias corrections).</param>
    /// <param name="learningRate">lr for this step; not negative, finite.</param>
    /// <param name="gradScale">Factor on the gradients (clip factor, loss-scale inverse); not negative, finite.</param>
    /// <param name="parameters">The fp32 master parameters, updated.</param>
    /// <param name="gradients">Their gradients, same length.</param>
    /// <param name="m">First moments, same length, updated.</param>
    /// <param name="v">Second moments, same length, updated.</param>
    /// <param name="parametersBf16">Empty, or the same length: receives the updated parameters rounded to bf16 (via fp32).</param>
    /// <exception cref="ArgumentException">A scalar is out of range, or a span's length differs.</exception>
    public static unsafe void Step<T>(AdamWOptions options, int step, float learningRate, float gradScale,
                               Span<T> parameters, ReadOnlySpan<T> gradients, Span<T> m, Span<T> v,
                               Span<BFloat16> parametersBf16 = default)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        ArgumentNullException.ThrowIfNull(options);
        Guard.Positive(step, nameof(step));
        if (!(float.IsFinite(learningRate) && learningRate >= 0))
            throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "learningRate must be finite and not negative.");
        if (!(float.IsFinite(gradScale) && gradScale >= 0))
            throw new ArgumentOutOfRangeException(nameof(gradScale), gradScale, "gradScale must be finite and not negative.");
        Guard.Shape(gradients, nameof(gradients), parameters.Length);
        Guard.Shape(m, nameof(m), parameters.Length);
        Guard.Shape(v, nameof(v), parameters.Length);
        Guard.ShapeOrEmpty(parametersBf16, nameof(parametersBf16), parameters.Length);

        double beta1 = options.Beta1, beta2 = options.Beta2, eps = options.Epsilon, decay = options.WeightDecay, lr = learningRate;
        double correction1 = 1 - Math.Pow(beta1, step), correction2 = 1 - Math.Pow(beta2, step);
        var length = parameters.Length;
        var withCopy = !parametersBf16.IsEmpty;
        fixed (T* pinnedP = parameters, pinnedG = gradients, pinnedM = m, pinnedV = v)
        fixed (BFloat16* pinnedCopy = parametersBf16)
        {
            nint pp = (nint)pinnedP, pg = (nint)pinnedG, pm = (nint)pinnedM, pv = (nint)pinnedV, pc = (nint)pinnedCopy;
            // Elementwise, so blocks of elements may run on any thread in any order.
            RowRanges.For((length + Block - 1) / Block, Block, (first, end) =>
            {
                T* parameter = (T*)pp, gradient = (T*)pg, moment1 = (T*)pm, moment2 = (T*)pv;
                for (long i = (long)first * Block, stop = Math.Min(length, (long)end * Block); i < stop; i++)
                {
                    var g = double.CreateTruncating(gradient[i]) * gradScale;
                    var mi = beta1 * double.CreateTruncating(moment1[i]) + (1 - beta1) * g;
                    var vi = beta2 * double.CreateTruncating(moment2[i]) + (1 - beta2) * g * g;
                    var p = double.CreateTruncating(parameter[i]);
                    p -= lr * (mi / correction1 / (Math.Sqrt(vi / correction2) + eps) + decay * p);
                    moment1[i] = T.CreateTruncating(mi);
                    moment2[i] = T.CreateTruncating(vi);
                    parameter[i] = T.CreateTruncating(p);
                    if (withCopy) ((BFloat16*)pc)[i] = BFloat16.FromSingle(float.CreateTruncating(parameter[i]));
                }
            });
        }
    }
}
