using Keel.Native.Devices;
using Keel.Native.Reference;

namespace Keel.Native.Model;

/// <summary>
/// The attention branch of an even sub-layer: q = z·Wqᵀ, k = z·Wkᵀ, v = z·Wvᵀ, RoPE on q and k (rotate half),
/// o = causal grouped-query attention(q, k, v), f = o·Woᵀ. It saves q and k after RoPE, v, o and the row
/// log-sum-exp; the backward pass runs the same ops in reverse (the attention backward from the saved o and
/// lse, RoPE's inverse rotation, and the transposed GEMMs).
/// </summary>
public sealed class AttentionSubLayer : SubLayer
{
    private readonly AttentionOptions _options;
    private readonly int _block;
    private readonly Tensor _q, _k, _v, _o, _lse;

    internal AttentionSubLayer(ModelContext context, int index) : base(context, index, SubLayerKind.Attention)
    {
        var c = context.Config;
        _block = index / 2;
        _options = new AttentionOptions(context.Batch, c.SequenceLength, c.Heads, c.KvHeads, c.HeadDim, Causal: true);
        _q = SavedBuffers["q"];
        _k = SavedBuffers["k"];
        _v = SavedBuffers["v"];
        _o = SavedBuffers["o"];
        _lse = SavedBuffers["lse"];
    }

    internal static List<ActivationSpec> BranchSpecs(ModelConfig config, ModelPrecision precision, int batch)
    {
        int s = config.SequenceLength, d = config.HeadDim;
        return
        [
            new("q", new TensorShape(batch, s, config.Heads, d), precision.Operand, true),
            new("k", new TensorShape(batch, s, config.KvHeads, d), precision.Operand, true),
            new("v", new TensorShape(batch, s, config.KvHeads, d), precision.Operand, true),
            new("o", new TensorShape(batch, s, config.Heads, d), precision.Operand, true),
            new("lse", new TensorShape(batch, config.Heads, s), precision.Master, true),
        ];
    }

    internal static IEnumerable<ActivationSpec> ScratchSpecs(ModelConfig config, ModelPrecision precision, int batch) =>
        BranchSpecs(config, precision, batch).Where(a => a.Name != "lse").Select(a => a with { Name = "d_" + a.Name, NeededByBackward = false });

    private protected override void BranchForward(Tensor z, Tensor f)
    {
        var layout = Context.Layout;
        Device.Gemm(z, false, Context.Weight(layout.QueryProjections[_block]), true, Rows(_q));
        Device.Gemm(z, false, Context.Weight(layout.KeyProjections[_block]), true, Rows(_k));
        Device.Gemm(z, false, Context.Weight(layout.ValueProjections[_block]), true, Rows(_v));
        var theta = Context.Config.RopeTheta;
        Device.RopeForward(_q, _q, theta);
        Device.RopeForward(_k, _k, theta);
        Device.AttentionForward(_options, _q, _k, _v, _o, _lse);
        Device.Gemm(Rows(_o), false, Context.Weight(layout.OutputProjections[_block]), true, f);
    }

    private protected override void BranchBackward(Tensor z, Tensor df, Tensor dz)
    {
        var layout = Context.Layout;
        var scratch = Context.Scratch;
        Tensor dO = scratch["d_o"], dq = scratch["d_q"], dk = scratch["d_k"], dv = scratch["d_v"];
        int wq = layout.QueryProjections[_block], wk = layout.KeyProjections[_block], wv = layout.ValueProjections[_block], wo = layout.OutputProjections[_block];

        Device.Gemm(df, true, Rows(_o), false, Context.Gradient(wo), beta: 1f);
        Device.Gemm(df, false, Context.Weight(wo), false, Rows(dO));
        Device.AttentionBackward(_options, _q, _k, _v, _o, _lse, dO, dq, dk, dv);
        var theta = Context.Config.RopeTheta;
        Device.RopeBackward(dq, dq, theta);
        Device.RopeBackward(dk, dk, theta);
        Device.Gemm(Rows(dq), true, z, false, Context.Gradient(wq), beta: 1f);
        Device.Gemm(Rows(dk), true, z, false, Context.Gradient(wk), beta: 1f);
        Device.Gemm(Rows(dv), true, z, false, Context.Gradient(wv), beta: 1f);
        Device.Gemm(Rows(dq), false, Context.Weight(wq), false, dz);
        Device.Gemm(Rows(dk), false, Context.Weight(wk), false, dz, beta: 1f);
        Device.Gemm(Rows(dv), false, Context.Weight(wv), false, dz, beta: 1f);
    }

    /// <summary>A [batch, sequence, heads, headDim] tensor as the [tokens, heads·headDim] matrix the GEMMs see.</summary>
    private static Tensor Rows(Tensor t) => t.Reshape(new TensorShape(t.Shape[0] * t.Shape[1], t.Shape[2] * t.Shape[3]));
}
