using Keel.Native.Devices;
using Keel.Native.Reference;

namespace Keel.Native.Model;

/// <summary>
/// One sub-layer l of the chain: its branch F_l followed by the fused residual norm that forms
/// x_{l+1} = N_out(alpha·x_l + F_l(z_l)) and the next sub-layer's input z_{l+1} = N_in(x_{l+1}) (which norms run and
/// alpha, per architecture: <see cref="ArchitectureRules"/>, through <see cref="ParameterLayout.ResidualNorm"/>).
/// <para>
/// A sub-layer owns no memory: each forward writes the tensors of <see cref="Saved"/> wherever the model's memory plan
/// puts them for that run (its tape, or workspaces when nothing is kept), and its backward reads them from where the plan
/// kept or recomputed them. The forward reads only x_l and z_l = N_in_l(x_l) (a pure function of x_l, see
/// <see cref="KeelModel.FormInput"/>) and the parameters, and is deterministic, so a plan may drop any of its tensors
/// and run it again from a kept x_l. The backward reads only x_l, z_l and the saved tensors other than z_out.
/// </para>
/// </summary>
public abstract class SubLayer
{
    private readonly NormWeights _outNorm, _nextInNorm, _outNormGradients, _nextInNormGradients;
    private readonly int _f, _xOut, _zOut, _meanOut, _rstdOut, _meanIn, _rstdIn;
    private Tensor[] _tape = [];

    private protected SubLayer(ModelContext context, int index, SubLayerKind kind)
    {
        Context = context;
        Index = index;
        Kind = kind;
        var layout = context.Layout;
        Residual = layout.ResidualNorm(index);
        var nextInNorm = layout.NextInputNorm(index);
        _outNorm = layout.View(context.Parameters, layout.OutputNorm(index));
        _nextInNorm = layout.View(context.Parameters, nextInNorm);
        _outNormGradients = context.NormGradients(layout.OutputNorm(index));
        _nextInNormGradients = context.NormGradients(nextInNorm);
        Saved = ActivationSpecs(kind, context.Config, context.Precision, context.Batch, Residual);
        _f = IndexOf("f");
        _xOut = IndexOf("x_out");
        _zOut = IndexOf("z_out");
        _meanOut = IndexOf("mean_out");
        _rstdOut = IndexOf("rstd_out");
        _meanIn = IndexOf("mean_in");
        _rstdIn = IndexOf("rstd_in");
    }

    /// <summary>l, from 0.</summary>
    public int Index { get; }

    /// <summary>Attention (even l) or feed-forward (odd l).</summary>
    public SubLayerKind Kind { get; }

    /// <summary>The fused residual norm that ends this sub-layer: alpha and which norms run.</summary>
    public ResidualNormOptions Residual { get; }

    /// <summary>The tensors the forward writes, in order (the order of every tensor list the forward and backward take).</summary>
    public IReadOnlyList<ActivationSpec> Saved { get; }

    /// <summary>x_{l+1} in this sub-layer's tape [tokens, hidden] (master type).</summary>
    public Tensor Output => _tape[_xOut];

    /// <summary>z_{l+1} in this sub-layer's tape [tokens, hidden] (operand type): N_in(x_{l+1}), or x_{l+1} itself without an input norm.</summary>
    public Tensor OutputOperand => _tape[_zOut];

    /// <summary>
    /// The tensor of <see cref="Saved"/> named <paramref name="name"/> where the taped forward writes it (the run whose
    /// tensors the backward reads; under a plan that recomputes a tensor just before the backward, the forward's place).
    /// </summary>
    /// <exception cref="KeyNotFoundException">This sub-layer saves no tensor of that name.</exception>
    public Tensor SavedTensor(string name)
    {
        var i = IndexOf(name);
        return i >= 0 ? _tape[i] : throw new KeyNotFoundException($"Sub-layer {Index} saves no tensor named '{name}'.");
    }

    /// <summary>Bytes of <see cref="Saved"/>.</summary>
    public long SavedBytes => Saved.Sum(s => s.ByteLength);

    /// <summary>Index of x_out in <see cref="Saved"/>.</summary>
    internal int OutputIndex => _xOut;

    /// <summary>Index of z_out in <see cref="Saved"/>.</summary>
    internal int OutputOperandIndex => _zOut;

    /// <summary>Where the taped forward writes <see cref="Saved"/> (set by the model from its plan).</summary>
    internal Tensor[] Tape
    {
        get => _tape;
        set => _tape = value.Length == Saved.Count ? value : throw new ArgumentException($"{value.Length} tensors for {Saved.Count} specs.", nameof(value));
    }

    private protected ModelContext Context { get; }

    private protected IDevice Device => Context.Device;

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

    /// <summary>Runs the branch on z_l and the fused residual norm on x_l, writing every tensor of <see cref="Saved"/> into <paramref name="saved"/>.</summary>
    /// <param name="x">x_l [tokens, hidden], master type.</param>
    /// <param name="z">z_l [tokens, hidden], operand type.</param>
    /// <param name="saved">Where each tensor of <see cref="Saved"/> goes.</param>
    internal void Forward(Tensor x, Tensor z, Tensor[] saved)
    {
        var f = saved[_f];
        BranchForward(z, f, saved);
        Device.ResidualNormForward(Residual, x, f, _outNorm, _nextInNorm, saved[_xOut], saved[_zOut], Statistics(saved));
    }

    /// <summary>
    /// Back-propagates through the residual norm and the branch, accumulating this sub-layer's parameter
    /// gradients (and those of the next sub-layer's input norm, which the fused kernel applied).
    /// </summary>
    /// <param name="x">x_l, as forward read it.</param>
    /// <param name="z">z_l, as forward read it.</param>
    /// <param name="saved">The forward's tensors, as it wrote them (z_out is not read).</param>
    /// <param name="dy">Gradient reaching x_{l+1} along the residual path (the next sub-layer's <paramref name="dx"/>), or empty.</param>
    /// <param name="dz">Gradient reaching z_{l+1} (the next sub-layer's <paramref name="dzIn"/>, or the LM head's).</param>
    /// <param name="dx">Output, overwritten: alpha·ds, the gradient reaching x_l along the residual path.</param>
    /// <param name="dzIn">Output, overwritten: the gradient reaching z_l from the branch.</param>
    /// <param name="scratch">d_f, then the branch's gradient temporaries (<see cref="KeelModel.ScratchSpecs"/> of this kind).</param>
    internal void Backward(Tensor x, Tensor z, Tensor[] saved, Tensor dy, Tensor dz, Tensor dx, Tensor dzIn, Tensor[] scratch)
    {
        var df = scratch[0];
        Device.ResidualNormBackward(Residual, x, saved[_f], saved[_xOut], _outNorm, _nextInNorm, Statistics(saved), dy, dz, dx, df,
                                    _outNormGradients, _nextInNormGradients);
        BranchBackward(z, df, dzIn, saved, scratch);
    }

    /// <summary>f = F(z), writing the branch's tensors of <paramref name="saved"/>.</summary>
    private protected abstract void BranchForward(Tensor z, Tensor f, Tensor[] saved);

    /// <summary>Accumulates the branch's weight gradients and writes dz (overwritten) from df.</summary>
    private protected abstract void BranchBackward(Tensor z, Tensor df, Tensor dz, Tensor[] saved, Tensor[] scratch);

    private NormStatistics Statistics(Tensor[] saved) => new(At(saved, _meanOut), At(saved, _rstdOut), At(saved, _meanIn), At(saved, _rstdIn));

    private static Tensor At(Tensor[] saved, int index) => index >= 0 ? saved[index] : default;

    private int IndexOf(string name)
    {
        for (var i = 0; i < Saved.Count; i++)
            if (Saved[i].Name == name) return i;
        return -1;
    }
}
