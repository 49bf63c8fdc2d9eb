using Keel.Native.Devices;

namespace Keel.Native.Model;

/// <summary>What every sub-layer of one model shares: the device, the shapes, and the flat parameter buffers.</summary>
internal sealed class ModelContext(IDevice device, ModelConfig config, ModelPrecision precision, ParameterLayout layout, int batch,
                                   Tensor parameters, Tensor operands, Tensor gradients, ActivationBuffers scratch)
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

    /// <summary>The gradients, laid out like the parameters; every op accumulates into them.</summary>
    public Tensor Gradients { get; } = gradients;

    /// <summary>Scratch tensors that no sub-layer keeps past its own backward (see <see cref="KeelModel.ScratchSpecs"/>).</summary>
    public ActivationBuffers Scratch { get; } = scratch;

    /// <summary>The GEMM view of parameter <paramref name="index"/>.</summary>
    public Tensor Weight(int index) => Layout.View(Operands, index);

    /// <summary>The gradient view of parameter <paramref name="index"/>.</summary>
    public Tensor Gradient(int index) => Layout.View(Gradients, index);
}
