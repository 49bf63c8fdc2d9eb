using Keel.Native.Devices;
using Keel.Native.Reference;

namespace Keel.Native.Model;

/// <summary>
/// One sub-layer l of the chain: its branch F_l followed by the fused residual norm that forms
/// x_{l+1} = N_out(alpha·x_l + F_l(z_l)) and the next sub-layer's input z_{l+1} = N_in(x_{l+1}) (DESIGN.md
/// section 1; the norms and alpha per architecture come from <see cref="ParameterLayout.ResidualNorm"/>).
/// <para>
/// <see cref="Forward"/> reads only x_l and z_l = N_in_l(x_l) (a pure function of x_l, see
/// <see cref="KeelModel.FormInput"/>) and the parameters, and writes every tensor of <see cref="Saved"/>; it
/// is deterministic, so a memory planner may drop those tensors and re-run it from a stored x_l.
/// <see cref="Backward"/> reads only the saved tensors, x_l and z_l.
/// </para>
/// </summary>
public abstract class SubLayer : IDisposable
{
    private readonly NormWeights _outNorm, _nextInNorm, _outNormGradients, _nextInNormGradients;
    private readonly NormStatistics _statistics;
    private readonly ActivationBuffers _saved;

    private protected SubLayer(ModelContext context, int index, SubLayerKind kind)
    {
        Context = context;
        Index = index;
        Kind = kind;
        var layout = context.Layout;
        Residual = layout.ResidualNorm(index);
        var nextInNorm = index + 1 < context.Config.SubLayers ? layout.InputNorm(index + 1) : layout.FinalNorm;
        _outNorm = layout.View(context.Parameters, layout.OutputNorm(index));
        _nextInNorm = layout.View(context.Parameters, nextInNorm);
        _outNormGradients = layout.View(context.Gradients, layout.OutputNorm(index));
        _nextInNormGradients = layout.View(context.Gradients, nextInNorm);
        Saved = ActivationSpecs(kind, context.Config, context.Precision, context.Batch, Residual);
        _saved = new ActivationBuffers(context.Device, Saved);
        F = _saved["f"];
        Output = _saved["x_out"];
        OutputOperand = _saved["z_out"];
        _statistics = new NormStatistics(_saved.GetOrEmpty("mean_out"), _saved.GetOrEmpty("rstd_out"),
                                         _saved.GetOrEmpty("mean_in"), _saved.GetOrEmpty("rstd_in"));
    }

    /// <summary>l, from 0.</summary>
    public int Index { get; }

    /// <summary>Attention (even l) or feed-forward (odd l).</summary>
    public SubLayerKind Kind { get; }

    /// <summary>The fused residual norm that ends this sub-layer: alpha and which norms run.</summary>
    public ResidualNormOptions Residual { get; }

    /// <summary>The tensors <see cref="Forward"/> writes, in allocation order.</summary>
    public IReadOnlyList<ActivationSpec> Saved { get; }

    /// <summary>x_{l+1}, the residual stream after this sub-layer [tokens, hidden] (master type).</summary>
    public Tensor Output { get; }

    /// <summary>z_{l+1}, the next sub-layer's GEMM input [tokens, hidden] (operand type): N_in(x_{l+1}), or x_{l+1} itself without an input norm.</summary>
    public Tensor OutputOperand { get; }

    /// <summary>The tensor of <see cref="Saved"/> named <paramref name="name"/> (for a memory planner that drops and restores it).</summary>
    /// <exception cref="KeyNotFoundException">This sub-layer saves no tensor of that name.</exception>
    public Tensor SavedTensor(string name) => _saved[name];

    /// <summary>Bytes of <see cref="Saved"/>.</summary>
    public long SavedBytes => _saved.ByteLength;

    private protected ModelContext Context { get; }

    private protected IDevice Device => Context.Device;

    /// <summary>The branch output f_l [tokens, hidden] (operand type).</summary>
    private protected Tensor F { get; }

    private protected ActivationBuffers SavedBuffers => _saved;

    /// <summary>
    /// The activation tensors a sub-layer of <paramref name="kind"/> saves for its backward, for a batch of
    /// <paramref name="batch"/> sequences: the branch's own, then f, x_out, z_out and the norm statistics.
    /// </summary>
    public static IReadOnlyList<ActivationSpec> ActivationSpecs(SubLayerKind kind, ModelConfig config, ModelPrecision precision,
                                                                int batch, ResidualNormOptions residual)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(precision);
        ArgumentNullException.ThrowIfNull(residual);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batch);
        var specs = kind == SubLayerKind.Attention
            ? AttentionSubLayer.BranchSpecs(config, precision, batch)
            : FeedForwardSubLayer.BranchSpecs(config, precision, batch);
        long tokens = (long)batch * config.SequenceLength;
        var rows = new TensorShape(tokens, config.Hidden);
        var stat = new TensorShape(tokens);
        bool layer = config.Norm == NormKind.Layer;
        specs.Add(new("f", rows, precision.Operand, true));
        specs.Add(new("x_out", rows, precision.Master, true));
        specs.Add(new("z_out", rows, precision.Operand, true));
        if (residual.OutputNorm && layer) specs.Add(new("mean_out", stat, precision.Master, true));
        if (residual.OutputNorm) specs.Add(new("rstd_out", stat, precision.Master, true));
        if (residual.InputNorm && layer) specs.Add(new("mean_in", stat, precision.Master, true));
        if (residual.InputNorm) specs.Add(new("rstd_in", stat, precision.Master, true));
        return specs;
    }

    /// <summary>Runs the branch on z_l and the fused residual norm on x_l, writing every saved tensor.</summary>
    /// <param name="x">x_l [tokens, hidden], master type.</param>
    /// <param name="z">z_l [tokens, hidden], operand type.</param>
    public void Forward(Tensor x, Tensor z)
    {
        BranchForward(z, F);
        Device.ResidualNormForward(Residual, x, F, _outNorm, _nextInNorm, Output, OutputOperand, _statistics);
    }

    /// <summary>
    /// Back-propagates through the residual norm and the branch, accumulating this sub-layer's parameter
    /// gradients (and those of the next sub-layer's input norm, which the fused kernel applied).
    /// </summary>
    /// <param name="x">x_l, as forward read it.</param>
    /// <param name="z">z_l, as forward read it.</param>
    /// <param name="dy">Gradient reaching x_{l+1} along the residual path (the next sub-layer's <paramref name="dx"/>), or empty.</param>
    /// <param name="dz">Gradient reaching z_{l+1} (the next sub-layer's <paramref name="dzIn"/>, or the LM head's).</param>
    /// <param name="dx">Output, overwritten: alpha·ds, the gradient reaching x_l along the residual path.</param>
    /// <param name="dzIn">Output, overwritten: the gradient reaching z_l from the branch.</param>
    public void Backward(Tensor x, Tensor z, Tensor dy, Tensor dz, Tensor dx, Tensor dzIn)
    {
        var df = Context.Scratch["d_f"];
        Device.ResidualNormBackward(Residual, x, F, Output, _outNorm, _nextInNorm, _statistics, dy, dz, dx, df,
                                    _outNormGradients, _nextInNormGradients);
        BranchBackward(z, df, dzIn);
    }

    /// <summary>f = F(z).</summary>
    private protected abstract void BranchForward(Tensor z, Tensor f);

    /// <summary>Accumulates the branch's weight gradients and writes dz (overwritten) from df.</summary>
    private protected abstract void BranchBackward(Tensor z, Tensor df, Tensor dz);

    /// <inheritdoc />
    public void Dispose()
    {
        _saved.Dispose();
        GC.SuppressFinalize(this);
    }
}
