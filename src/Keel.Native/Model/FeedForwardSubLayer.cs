using Keel.Native.Devices;

namespace Keel.Native.Model;

/// <summary>
/// The feed-forward branch of an odd sub-layer. SwiGLU: [g | u] = z·[Wgate; Wup]ᵀ (one GEMM over the adjacent
/// gate and up matrices), h = silu(g) ⊙ u, f = h·Wdownᵀ; it saves [g | u] and h. GELU: u = z·Wupᵀ,
/// h = GELU(u), f = h·Wdownᵀ; it saves u and h.
/// </summary>
public sealed class FeedForwardSubLayer : SubLayer
{
    private readonly int _block;
    private readonly bool _swiGlu;
    private readonly Tensor _pre, _h;

    internal FeedForwardSubLayer(ModelContext context, int index) : base(context, index, SubLayerKind.FeedForward)
    {
        _block = index / 2;
        _swiGlu = context.Config.FeedForward == FeedForwardKind.SwiGlu;
        _pre = SavedBuffers[_swiGlu ? "gate_up" : "u"];
        _h = SavedBuffers["h"];
    }

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

    /// <summary>The matrix the first GEMM reads: [gate; up] as one [2F, H] matrix for SwiGLU, up [F, H] for GELU.</summary>
    private Tensor InputWeights(Tensor flat)
    {
        var layout = Context.Layout;
        var up = layout.UpProjections[_block];
        if (!_swiGlu) return layout.View(flat, up);
        var gate = layout.Tensors[up - 1];
        var c = Context.Config;
        return flat.Slice(gate.Offset, 2L * gate.Length).Reshape(new TensorShape(2L * c.FeedForwardSize, c.Hidden));
    }

    private protected override void BranchForward(Tensor z, Tensor f)
    {
        Device.Gemm(z, false, InputWeights(Context.Operands), true, _pre);
        if (_swiGlu) Device.SwiGluForward(_pre, _h);
        else Device.GeluForward(_pre, _h);
        Device.Gemm(_h, false, Context.Weight(Context.Layout.DownProjections[_block]), true, f);
    }

    private protected override void BranchBackward(Tensor z, Tensor df, Tensor dz)
    {
        var down = Context.Layout.DownProjections[_block];
        Tensor dh = Context.Scratch["d_h"], dPre = Context.Scratch[_swiGlu ? "d_gate_up" : "d_u"];
        Device.Gemm(df, true, _h, false, Context.Gradient(down), beta: 1f);
        Device.Gemm(df, false, Context.Weight(down), false, dh);
        if (_swiGlu) Device.SwiGluBackward(_pre, dh, dPre);
        else Device.GeluBackward(_pre, dh, dPre);
        Device.Gemm(dPre, true, z, false, InputWeights(Context.Gradients), beta: 1f);
        Device.Gemm(dPre, false, InputWeights(Context.Operands), false, dz);
    }
}
