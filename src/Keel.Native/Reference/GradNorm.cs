using System.Numerics;

namespace Keel.Native.Reference;

/// <summary>
/// The global gradient norm for clipping: ‖g‖ = sqrt(Σ over every tensor of Σ g²), summed in fp64 in a fixed
/// order (tensor by tensor, element by element), and the clip factor min(1, maxNorm / (‖g‖ + 1e-6)) that AdamW's
/// gradScale takes.
/// </summary>
public static class GradNorm
{
    /// <summary>The 1e-6 added to the norm in <see cref="ClipFactor"/> (as PyTorch's clip_grad_norm_ does).</summary>
    public const double ClipEpsilon = 1e-6;

    /// <summary>Σ values², in fp64, in element order.</summary>
    /// <param name="values">Any span.</param>
    public static double SumOfSquares<T>(ReadOnlySpan<T> values)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var sum = 0.0;
        foreach (var value in values)
        {
            var d = double.CreateTruncating(value);
            sum += d * d;
        }
        return sum;
    }

    /// <summary>sqrt(Σ_tensors SumOfSquares(tensor)), the tensors taken in the given order.</summary>
    /// <param name="gradients">The gradient tensors.</param>
    public static double GlobalNorm<T>(params ReadOnlySpan<ReadOnlyMemory<T>> gradients)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var sum = 0.0;
        foreach (var gradient in gradients) sum += SumOfSquares(gradient.Span);
        return Math.Sqrt(sum);
    }

    /// <summary>
    /// min(1, maxNorm / (norm + 1e-6)): the factor that brings the global norm down to at most maxNorm. A NaN norm
    /// gives NaN (a step with non-finite gradients should be skipped, not silently clipped); an infinite one gives 0.
    /// </summary>
    /// <param name="norm">The global norm; not negative (NaN and infinity pass through as described).</param>
    /// <param name="maxNorm">The clipping threshold; positive and finite.</param>
    /// <exception cref="ArgumentOutOfRangeException">norm is negative, or maxNorm is not positive and finite.</exception>
    public static double ClipFactor(double norm, double maxNorm)
    {
        if (norm < 0) throw new ArgumentOutOfRangeException(nameof(norm), norm, "norm must not be negative.");
        Guard.PositiveFinite(maxNorm, nameof(maxNorm));
        return double.IsNaN(norm) ? double.NaN : Math.Min(1, maxNorm / (norm + ClipEpsilon));
    }
}
