using Keel.Native.Devices;
using Keel.Native.Reference;

namespace Keel.Native.Model;

/// <summary>One parameter tensor's place in the flat parameter buffer.</summary>
/// <param name="Name">Its name in checkpoints, in the Llama convention (<c>model.layers.3.self_attn.q_proj.weight</c>).</param>
/// <param name="Shape">Row-major shape, as checkpoints hold it; matrices are [out, in].</param>
/// <param name="PaddedShape">
/// The shape it occupies in the flat buffer: [<see cref="ModelConfig.PaddedVocabularySize"/>, hidden] for the embedding
/// table and an untied LM head, whose rows past <paramref name="Shape"/>'s are padding that stays zero; <paramref name="Shape"/>
/// for every other tensor. <paramref name="Shape"/>'s elements are the first ones of it.
/// </param>
/// <param name="Offset">First element in the flat buffer.</param>
/// <param name="Decayed">True for the matrices, which AdamW decays; norm gains and biases are not decayed.</param>
/// <param name="InitStd">Standard deviation of its normal initialization; 0 for norm tensors (gains start at 1, biases at 0).</param>
public sealed record ParameterTensor(string Name, TensorShape Shape, TensorShape PaddedShape, long Offset, bool Decayed, double InitStd)
{
    /// <summary>Number of elements (the padding not counted).</summary>
    public long Length => Shape.ElementCount;

    /// <summary>Number of elements it occupies in the flat buffer, padding included.</summary>
    public long PaddedLength => PaddedShape.ElementCount;

    /// <summary>True for a norm gain (initialized to 1).</summary>
    public bool IsGain => InitStd == 0 && Name.EndsWith(".weight", StringComparison.Ordinal);
}

/// <summary>The learnable tensors of one norm, as indices into <see cref="ParameterLayout.Tensors"/>.</summary>
/// <param name="Gain">The gain's index.</param>
/// <param name="Bias">The bias's index (LayerNorm), or −1.</param>
public readonly record struct NormParameterIndex(int Gain, int Bias);

/// <summary>
/// Where every parameter tensor lives in the one flat parameter buffer (and, at the same offsets, in the
/// gradient, moment and operand-copy buffers). The matrices come first, then the norm tensors, so that weight
/// decay applies to one leading range, [0, <see cref="DecayedLength"/>). Offsets are multiples of 64 elements
/// (256-byte aligned in fp32), except that each block's gate and up projections are adjacent, so the SwiGLU
/// branch runs them as one [2F, H] GEMM.
/// <para>
/// The embedding table and an untied LM head take <see cref="ModelConfig.PaddedVocabularySize"/> rows (the vocabulary
/// rounded up to a multiple of 64), so the LM head GEMM writes logits [T, Vp] with an aligned n and leading dimension.
/// The padded rows, like the padding between tensors, are zero from initialization on and receive zero gradient, so
/// AdamW keeps them zero. <see cref="View(Tensor, int)"/> gives a tensor's true shape (what the embedding, checkpoints
/// and initialization use); <see cref="PaddedView"/> the padded one (what the LM head's GEMMs use).
/// </para>
/// <para>
/// Which norms exist follows the architecture's rules (<see cref="ArchitectureRules"/>; sub-layer l, block l/2): an input
/// norm N_in is <c>input_layernorm</c> for attention and <c>post_attention_layernorm</c> for the FFN (the Llama places);
/// an output norm N_out is <c>attention_output_norm</c> or <c>mlp_output_norm</c>; the final norm is <c>model.norm</c>.
/// </para>
/// </summary>
public sealed class ParameterLayout
{
    private const int Alignment = 64;
    private readonly List<ParameterTensor> _tensors = [];
    private readonly Dictionary<string, int> _byName = new(StringComparer.Ordinal);
    private readonly NormParameterIndex?[] _inputNorms, _outputNorms;
    private long _next;

    /// <summary>Lays out the parameters of <paramref name="config"/> (validated first).</summary>
    public ParameterLayout(ModelConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        int h = config.Hidden, d = config.HeadDim, f = config.FeedForwardSize, v = config.VocabularySize, vp = config.PaddedVocabularySize;
        var rules = config.Rules;
        double std = config.InitStd, scaled = config.InitStd * rules.InitScale(config.SubLayers);

        Embedding = AddVocabularyMatrix("model.embed_tokens.weight", v, vp, h, std);
        var q = new int[config.Blocks];
        var k = new int[config.Blocks];
        var values = new int[config.Blocks];
        var o = new int[config.Blocks];
        var up = new int[config.Blocks];
        var down = new int[config.Blocks];
        for (var i = 0; i < config.Blocks; i++)
        {
            var prefix = $"model.layers.{i}.";
            q[i] = AddMatrix(prefix + "self_attn.q_proj.weight", config.Heads * d, h, std);
            k[i] = AddMatrix(prefix + "self_attn.k_proj.weight", config.KvHeads * d, h, std);
            values[i] = AddMatrix(prefix + "self_attn.v_proj.weight", config.KvHeads * d, h, scaled);
            o[i] = AddMatrix(prefix + "self_attn.o_proj.weight", h, config.Heads * d, scaled);
            if (config.FeedForward == FeedForwardKind.SwiGlu)
            {
                AddMatrix(prefix + "mlp.gate_proj.weight", f, h, scaled);
                up[i] = AddMatrix(prefix + "mlp.up_proj.weight", f, h, scaled, adjacent: true);
            }
            else
            {
                up[i] = AddMatrix(prefix + "mlp.up_proj.weight", f, h, scaled);
            }
            down[i] = AddMatrix(prefix + "mlp.down_proj.weight", h, f, scaled);
        }
        LmHead = config.TiedEmbeddings ? Embedding : AddVocabularyMatrix("lm_head.weight", v, vp, h, std);
        (QueryProjections, KeyProjections, ValueProjections, OutputProjections, UpProjections, DownProjections) = (q, k, values, o, up, down);
        _next = Align(_next);
        DecayedLength = _next;

        _inputNorms = new NormParameterIndex?[config.SubLayers];
        _outputNorms = new NormParameterIndex?[config.SubLayers];
        for (var l = 0; l < config.SubLayers; l++)
        {
            var prefix = $"model.layers.{l / 2}.";
            var attention = l % 2 == 0;
            if (rules.HasInputNorm(l))
                _inputNorms[l] = AddNorm(prefix + (attention ? "input_layernorm" : "post_attention_layernorm"));
            if (rules.HasOutputNorm(l))
                _outputNorms[l] = AddNorm(prefix + (attention ? "attention_output_norm" : "mlp_output_norm"));
        }
        if (rules.FinalNorm) FinalNorm = AddNorm("model.norm");
        Length = Align(_next);
    }

    /// <summary>The config laid out.</summary>
    public ModelConfig Config { get; }

    /// <summary>Every tensor, matrices first, in buffer order.</summary>
    public IReadOnlyList<ParameterTensor> Tensors => _tensors;

    /// <summary>Total elements of the flat buffer (including alignment and vocabulary padding, which stay zero).</summary>
    public long Length { get; }

    /// <summary>Elements [0, DecayedLength) hold the matrices (weight-decayed); the rest the norm tensors.</summary>
    public long DecayedLength { get; }

    /// <summary>Number of parameters (without padding).</summary>
    public long ParameterCount => _tensors.Sum(t => t.Length);

    /// <summary>Index of the embedding table [vocab, hidden] ([Vp, hidden] in the buffer).</summary>
    public int Embedding { get; }

    /// <summary>Index of the LM head [vocab, hidden] ([Vp, hidden] in the buffer); equals <see cref="Embedding"/> when tied.</summary>
    public int LmHead { get; }

    /// <summary>Per block, the index of q_proj [Heads·D, H].</summary>
    public IReadOnlyList<int> QueryProjections { get; }

    /// <summary>Per block, the index of k_proj [KvHeads·D, H].</summary>
    public IReadOnlyList<int> KeyProjections { get; }

    /// <summary>Per block, the index of v_proj [KvHeads·D, H].</summary>
    public IReadOnlyList<int> ValueProjections { get; }

    /// <summary>Per block, the index of o_proj [H, Heads·D].</summary>
    public IReadOnlyList<int> OutputProjections { get; }

    /// <summary>Per block, the index of up_proj [F, H]; for SwiGLU, gate_proj sits right before it.</summary>
    public IReadOnlyList<int> UpProjections { get; }

    /// <summary>Per block, the index of down_proj [H, F].</summary>
    public IReadOnlyList<int> DownProjections { get; }

    /// <summary>The final norm before the LM head (Pre-LN), or null.</summary>
    public NormParameterIndex? FinalNorm { get; }

    /// <summary>The input norm N_in of sub-layer <paramref name="subLayer"/>, or null when the architecture has none.</summary>
    public NormParameterIndex? InputNorm(int subLayer) => _inputNorms[subLayer];

    /// <summary>The output norm N_out of sub-layer <paramref name="subLayer"/>, or null when it has none.</summary>
    public NormParameterIndex? OutputNorm(int subLayer) => _outputNorms[subLayer];

    /// <summary>
    /// The norm the op ending sub-layer <paramref name="subLayer"/> (−1: the input stage) applies to form the next operand:
    /// the input norm of the next sub-layer, or the final norm after the last; null when there is none.
    /// </summary>
    public NormParameterIndex? NextInputNorm(int subLayer) => subLayer + 1 < Config.SubLayers ? _inputNorms[subLayer + 1] : FinalNorm;

    /// <summary>The index of the tensor named <paramref name="name"/>, or −1.</summary>
    public int IndexOf(string name) => _byName.GetValueOrDefault(name, -1);

    /// <summary>
    /// The fused residual norm that ends sub-layer <paramref name="subLayer"/>, as <see cref="ArchitectureRules"/> gives it:
    /// s = alpha_l·x + f, y = N_out(s) (if the sub-layer has an output norm), z = N_in(y) of the next sub-layer (or the final
    /// norm after the last; <see cref="NextInputNorm"/>). With <paramref name="subLayer"/> = −1, the input stage that forms
    /// sub-layer 0's input z0 = N_in(x0) from the embedding output (alpha 1, no output norm).
    /// </summary>
    public ResidualNormOptions ResidualNorm(int subLayer)
    {
        var c = Config;
        if (subLayer < -1 || subLayer >= c.SubLayers) throw new ArgumentOutOfRangeException(nameof(subLayer), subLayer, $"Sub-layers are 0 to {c.SubLayers - 1}, or −1 for the input stage.");
        var rules = c.Rules;
        return new ResidualNormOptions(c.Norm, rules.Alpha(subLayer, c.ResidualScale), OutputNorm: rules.HasOutputNorm(subLayer),
                                       InputNorm: rules.HasNextInputNorm(subLayer, c.SubLayers), c.NormEpsilon);
    }

    /// <summary>The view of tensor <paramref name="index"/> in a flat buffer laid out by this layout, in its true <see cref="ParameterTensor.Shape"/>.</summary>
    public Tensor View(Tensor flat, int index)
    {
        var t = _tensors[index];
        return flat.Slice(t.Offset, t.Length).Reshape(t.Shape);
    }

    /// <summary>
    /// The view of tensor <paramref name="index"/> with its padding, in <see cref="ParameterTensor.PaddedShape"/>: the
    /// embedding table or LM head as [Vp, hidden] (the same as <see cref="View(Tensor, int)"/> for other tensors).
    /// </summary>
    public Tensor PaddedView(Tensor flat, int index)
    {
        var t = _tensors[index];
        return flat.Slice(t.Offset, t.PaddedLength).Reshape(t.PaddedShape);
    }

    /// <summary>The gain and bias views of a norm in a flat buffer, or <see cref="NormWeights.None"/>.</summary>
    public NormWeights View(Tensor flat, NormParameterIndex? norm) =>
        norm is { } n ? new NormWeights(View(flat, n.Gain), n.Bias >= 0 ? View(flat, n.Bias) : default) : NormWeights.None;

    private int AddMatrix(string name, int rows, int columns, double std, bool adjacent = false) =>
        Add(name, new TensorShape(rows, columns), new TensorShape(rows, columns), decayed: true, std, adjacent);

    private int AddVocabularyMatrix(string name, int vocabulary, int paddedVocabulary, int hidden, double std) =>
        Add(name, new TensorShape(vocabulary, hidden), new TensorShape(paddedVocabulary, hidden), decayed: true, std, adjacent: false);

    private NormParameterIndex AddNorm(string prefix)
    {
        var shape = new TensorShape(Config.Hidden);
        var gain = Add(prefix + ".weight", shape, shape, decayed: false, 0, adjacent: false);
        var bias = Config.Norm == NormKind.Layer ? Add(prefix + ".bias", shape, shape, decayed: false, 0, adjacent: false) : -1;
        return new NormParameterIndex(gain, bias);
    }

    private int Add(string name, TensorShape shape, TensorShape padded, bool decayed, double std, bool adjacent)
    {
        var offset = adjacent ? _next : Align(_next);
        _tensors.Add(new ParameterTensor(name, shape, padded, offset, decayed, std));
        _byName.Add(name, _tensors.Count - 1);
        _next = offset + padded.ElementCount;
        return _tensors.Count - 1;
    }

    /// <summary><paramref name="elements"/> rounded up to the layout's tensor alignment (64 elements).</summary>
    internal static long Align(long elements) => (elements + Alignment - 1) / Alignment * Alignment;
}
