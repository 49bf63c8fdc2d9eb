using Keel.Native.Devices;

namespace Keel.Native.Model;

/// <summary>
/// The feed-forward branch of an odd sub-layer. SwiGLU: [g | u] = z·[Wgate; Wup]ᵀ (one GEMM over the adjacent
/// gate and up matrices), h = silu(g) ⊙ u, f = h·Wdownᵀ; it saves [g | u] and h. GELU: u = z·Wupᵀ,
/// h = GELU(u), f = h·Wdownᵀ; it saves u and h.
/// </summary>
public sealed class FeedForwardSubLayer : SubLayer
{
    private const int Pre = 0, H = 1;
    private readonly int _block;
    private readonly bool _swiGlu;

    internal FeedForwardSubLayer(ModelContext context, int index) : base(context, index, SubLayerKind.FeedForward)
    {
        _block = index / 2;
        _swiGlu = context.Config.FeedForward == FeedForwardKind.SwiGlu;
    }

    /// <summary>The branch's tensors: the pre-activation ([g | u] or u) at index 0, h at 1.</summary>
    internal static List<ActivationSpec> BranchSpecs(ModelConfig config, ModelPrecision precision, int batch)
    {
        long tokens = (long)batch * config.SequenceLength;
        int f = config.FeedForwardSize;
        return config.FeedForward == FeedForwardKind.SwiGlu
            ? [new("gate_up", new TensorShape(tokens, 2L * f), precision.Operand, true), new("h", new TensorShape(tokens, f), precision.Operand, true)]
            : [new("u", new TensorShape(tokens, f), precision.Operand, true), new("h", new TensorShape(tokens, f), precision.Operand, true)];
    }

    internal static IEnumerable<ActivationSpec> ScratchSpecs(ModelConfig config, ModelPrecision precision, int batch) =>
        BranchSpecs(config, precision, batch).Select(a => a with { Name = "d_" + a.Name, NeededByBackward = false });

    /// <summary>
    /// The matrix the first GEMM reads, as weights or as their gradients: [gate; up] as one [2F, H] matrix for SwiGLU (the
    /// two are adjacent in the flat layout), up [F, H] for GELU.
    /// </summary>
    private Tensor InputWeights(bool gradients)
    {
        var layout = Context.Layout;
        var up = layout.Tensors[layout.UpProjections[_block]];
        var c = Context.Config;
        var (offset, length) = _swiGlu ? (layout.Tensors[layout.UpProjections[_block] - 1].Offset, 2L * up.Length) : (up.Offset, up.Length);
        var shape = new TensorShape(length / c.Hidden, c.Hidden);
        return (gradients ? Context.GradientRange(offset, length) : Context.Operands.Slice(offset, length)).Reshape(shape);
    }

    /// <summary>h = silu(g) ⊙ u (or GELU(u)) from the pre-activation alone: the activation a memory plan recomputes instead of keeping.</summary>
    internal void Activate(Tensor pre, Tensor h)
    {
        if (_swiGlu) Device.SwiGluForward(pre, h);
        else Device.GeluForward(pre, h);
    }

    private protected override void BranchForward(Tensor z, Tensor f, Tensor[] saved)
    {
        Tensor pre = saved[Pre], h = saved[H];
        Device.Gemm(z, false, InputWeights(gradients: false), true, pre);
        Activate(pre, h);
        Device.Gemm(h, false, Context.Weight(Context.Layout.DownProjections[_block]), true, f);
    }

    private protected override void BranchBackward(Tensor z, Tensor df, Tensor dz, Tensor[] saved, Tensor[] scratch)
    {
        var down = Context.Layout.DownProjections[_block];
        // scratch: d_f, then ScratchSpecs' order d_gate_up (or d_u), d_h.
        Tensor dPre = scratch[1], dh = scratch[2], pre = saved[Pre], h = saved[H];
        Device.Gemm(df, true, h, false, Context.Gradient(down), beta: 1f);
        Device.Gemm(df, false, Context.Weight(down), false, dh);
        if (_swiGlu) Device.SwiGluBackward(pre, dh, dPre);
        else Device.GeluBackward(pre, dh, dPre);
        Device.Gemm(dPre, true, z, false, InputWeights(gradients: true), beta: 1f);
        Device.Gemm(dPre, false, InputWeights(gradients: false), false, dz);
    }
}
