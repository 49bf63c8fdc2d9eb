namespace Keel.Native.Devices;

/// <summary>The learnable tensors of one norm (or their gradients): a gain, and a bias for LayerNorm (empty for RMSNorm).</summary>
/// <param name="Gain">[hidden].</param>
/// <param name="Bias">[hidden] for LayerNorm; empty for RMSNorm, and for a norm that is not applied.</param>
public readonly record struct NormWeights(Tensor Gain, Tensor Bias)
{
    /// <summary>No norm: both tensors empty.</summary>
    public static NormWeights None => default;
}

/// <summary>
/// What a residual-norm forward saves per row for its backward: the mean (LayerNorm only) and 1/rms or
/// 1/std of the sum s (for N_out) and of the output y (for N_in). Each is [rows] fp32, or empty when its
/// norm is not applied.
/// </summary>
public readonly record struct NormStatistics(Tensor MeanOut, Tensor RstdOut, Tensor MeanIn, Tensor RstdIn);
