using Keel.Native.Devices;

namespace Keel.Native.Model;

/// <summary>
/// What every sub-layer of one model shares: the device, the shapes, the flat parameter buffers, and where each parameter's
/// gradient lives (one flat buffer laid out like the parameters, or <see cref="GradientBuckets"/>).
/// </summary>
internal sealed class ModelContext(IDevice device, ModelConfig config, ModelPrecision precision, ParameterLayout layout, int batch,
                                   Tensor parameters, Tensor operands, Tensor flatGradients, GradientBuckets? buckets, Tensor residentGradients, Tensor gradientSlots)
{
    public IDevice Device { get; } = device;
    public ModelConfig Config { get; } = config;
    public ModelPrecision Precision { get; } = precision;
    public ParameterLayout Layout { get; } = layout;
    public int Batch { get; } = batch;
    public int Tokens => Batch * Config.SequenceLength;

    /// <summary>The master parameters (norm gains and the embedding table are read from here).</summary>
    public Tensor Parameters { get; } = parameters;

    /// <summary>The parameters the GEMMs read: an operand-typed copy, or <see cref="Parameters"/> itself.</summary>
    public Tensor Operands { get; } = operands;

    /// <summary>The GEMM view of parameter <paramref name="index"/>.</summary>
    public Tensor Weight(int index) => Layout.View(Operands, index);

    /// <summary>The gradient view of parameter <paramref name="index"/>; every op accumulates into it.</summary>
    public Tensor Gradient(int index)
    {
        var t = Layout.Tensors[index];
        return GradientRange(t.Offset, t.Length).Reshape(t.Shape);
    }

    /// <summary>The gradient view of parameter <paramref name="index"/> with its padded rows (<see cref="ParameterLayout.PaddedView"/>).</summary>
    public Tensor PaddedGradient(int index)
    {
        var t = Layout.Tensors[index];
        return GradientRange(t.Offset, t.PaddedLength).Reshape(t.PaddedShape);
    }

    /// <summary>The gradient views of a norm's gain and bias, or <see cref="NormWeights.None"/>.</summary>
    public NormWeights NormGradients(NormParameterIndex? norm) =>
        norm is { } n ? new NormWeights(Gradient(n.Gain), n.Bias >= 0 ? Gradient(n.Bias) : default) : NormWeights.None;

    /// <summary>The gradients of flat elements [<paramref name="offset"/>, offset + <paramref name="length"/>), which lie in one tensor or one sub-layer's matrices.</summary>
    public Tensor GradientRange(long offset, long length) =>
        buckets is null ? flatGradients.Slice(offset, length) : buckets.View(residentGradients, gradientSlots, offset, length);
}
