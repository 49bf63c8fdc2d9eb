using System.Text.Json;
using System.Text.Json.Serialization;
using Keel.Native.Reference;

namespace Keel.Native.Model;

/// <summary>
/// The shape and kind of a Keel Transformer (or one of its baselines). Each value is range-checked when set
/// (also through <c>with</c> and JSON); <see cref="Validate"/> checks the values against each other and is
/// called before anything is allocated. Every failure is an <see cref="ArgumentException"/> naming the field.
/// The defaults are those of <c>keel train</c>: the small model it trains on a CPU, and the feed-forward width
/// 3 × <see cref="Hidden"/> unless <see cref="FeedForwardSize"/> is set.
/// </summary>
/// <example>
/// <code>
/// var config = new ModelConfig { VocabularySize = 50257, Hidden = 256, Heads = 8, KvHeads = 4, SubLayers = 64 }.Validate();
/// // FeedForwardSize is 768 (3 × Hidden); alpha is L = 64 (config.ResidualScale).
/// </code>
/// </example>
public sealed record ModelConfig
{
    private readonly int? _feedForwardSize;

    /// <summary>Number of token ids (256 for the byte tokenizer, 50257 for GPT-2 BPE).</summary>
    public int VocabularySize { get; init => field = Positive(value, nameof(VocabularySize)); } = 256;

    /// <summary>Width of the residual stream.</summary>
    public int Hidden { get; init => field = Positive(value, nameof(Hidden)); } = 64;

    /// <summary>Query heads; must divide <see cref="Hidden"/>, giving an even head dimension (RoPE rotates pairs).</summary>
    public int Heads { get; init => field = Positive(value, nameof(Heads)); } = 4;

    /// <summary>Key/value heads (grouped-query attention); must divide <see cref="Heads"/>.</summary>
    public int KvHeads { get; init => field = Positive(value, nameof(KvHeads)); } = 2;

    /// <summary>
    /// Intermediate width of the feed-forward branch: unless set, <see cref="DefaultFeedForwardSize"/> of <see cref="Hidden"/>
    /// (3 × Hidden; it follows Hidden, also through <c>with</c>). In JSON, <c>feed_forward_size</c> is null when not set.
    /// </summary>
    [JsonIgnore]
    public int FeedForwardSize
    {
        get => _feedForwardSize ?? DefaultFeedForwardSize(Hidden);
        init => _feedForwardSize = Positive(value, nameof(FeedForwardSize));
    }

    /// <summary>SwiGLU (default) or GELU.</summary>
    public FeedForwardKind FeedForward { get; init => field = Defined(value, nameof(FeedForward)); } = FeedForwardKind.SwiGlu;

    /// <summary>L, the number of sub-layers, attention and FFN counted separately; even (they come in pairs), at least 2.</summary>
    public int SubLayers { get; init => field = Positive(value, nameof(SubLayers)); } = 4;

    /// <summary>RMSNorm (default) or LayerNorm, for every norm of the model.</summary>
    public NormKind Norm { get; init => field = Defined(value, nameof(Norm)); } = NormKind.Rms;

    /// <summary>Keel (default) or a baseline.</summary>
    public Architecture Architecture { get; init => field = Defined(value, nameof(Architecture)); } = Architecture.Keel;

    /// <summary>
    /// Overrides the residual scale alpha of an architecture that has one (<see cref="ArchitectureRules.HasResidualScale"/>:
    /// Keel's sub-layers from the third on, default L; DeepNorm's every sub-layer, default (2M)^(1/4)); null for the default.
    /// Positive and finite; <see cref="Validate"/> refuses it for Pre-LN and Post-LN, which add x_l unscaled.
    /// </summary>
    public float? Alpha { get; init => field = value is { } a ? PositiveFinite(a, nameof(Alpha)) : null; }

    /// <summary>Tokens per training sequence (the attention window).</summary>
    public int SequenceLength { get; init => field = Positive(value, nameof(SequenceLength)); } = 64;

    /// <summary>The LM head reuses the embedding table (true, default) or has its own matrix.</summary>
    public bool TiedEmbeddings { get; init; } = true;

    /// <summary>The eps of every norm (the paper's 1e-5).</summary>
    public float NormEpsilon { get; init => field = PositiveFinite(value, nameof(NormEpsilon)); } = 1e-5f;

    /// <summary>RoPE's frequency base (10000).</summary>
    public float RopeTheta { get; init => field = value > 1 && float.IsFinite(value) ? value : throw new ArgumentOutOfRangeException(nameof(RopeTheta), value, "RopeTheta must be finite and greater than 1."); } = Rope.DefaultTheta;

    /// <summary>Standard deviation of every matrix at initialization (0.02).</summary>
    public float InitStd { get; init => field = PositiveFinite(value, nameof(InitStd)); } = 0.02f;

    /// <summary>The feed-forward width when none is set: 3 × <paramref name="hidden"/>.</summary>
    public static int DefaultFeedForwardSize(int hidden) => 3 * hidden;

    /// <summary><see cref="FeedForwardSize"/> as set (null: it follows Hidden); what JSON holds.</summary>
    [JsonInclude, JsonPropertyName("feed_forward_size")]
    private int? FeedForwardSizeSetting
    {
        get => _feedForwardSize;
        init => _feedForwardSize = value is { } size ? Positive(size, nameof(FeedForwardSize)) : null;
    }

    /// <summary>Width of one head: Hidden / Heads.</summary>
    [JsonIgnore]
    public int HeadDim => Hidden / Heads;

    /// <summary>Number of attention + FFN blocks, M = L / 2.</summary>
    [JsonIgnore]
    public int Blocks => SubLayers / 2;

    /// <summary>The rules of <see cref="Architecture"/>: which norms run, alpha, the first-layer rules, the initialization.</summary>
    [JsonIgnore]
    public ArchitectureRules Rules => ArchitectureRules.For(Architecture);

    /// <summary>alpha of the sub-layers that scale x_l: <see cref="Alpha"/>, else the architecture's default (Keel L, DeepNorm (2M)^(1/4)); 1 without a residual scale.</summary>
    [JsonIgnore]
    public float ResidualScale => Rules.ResidualScale(SubLayers, Alpha);

    /// <summary>Checks the fields against each other; returns this config for chaining.</summary>
    /// <exception cref="ArgumentException">A combination cannot work; the message and ParamName name the field.</exception>
    public ModelConfig Validate()
    {
        if (Hidden % Heads != 0)
            throw new ArgumentException($"Hidden ({Hidden}) is not divisible by Heads ({Heads}).", nameof(Heads));
        if (HeadDim % 2 != 0)
            throw new ArgumentException($"Hidden / Heads = {HeadDim} is odd; RoPE needs an even head dimension.", nameof(Heads));
        if (Heads % KvHeads != 0)
            throw new ArgumentException($"KvHeads ({KvHeads}) does not divide Heads ({Heads}).", nameof(KvHeads));
        if (SubLayers < 2 || SubLayers % 2 != 0)
            throw new ArgumentException($"SubLayers ({SubLayers}) must be even and at least 2: attention and FFN sub-layers alternate.", nameof(SubLayers));
        if (Alpha is { } alpha && !Rules.HasResidualScale)
            throw new ArgumentException($"Alpha ({alpha}) does not apply to {Architecture}, whose sub-layers add x_l unscaled ({Rules.Equation}); only Keel and DeepNorm have a residual scale.", nameof(Alpha));
        return this;
    }

    /// <summary>The JSON options of <see cref="ToJson"/> and <see cref="FromJson"/>: snake_case names, enums as names.</summary>
    public static JsonSerializerOptions JsonOptions { get; } = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
        WriteIndented = true,
    };

    /// <summary>This config as indented JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    /// <summary>Reads and validates a config written by <see cref="ToJson"/>.</summary>
    /// <exception cref="InvalidDataException">The text is not such a config, or a value is out of range.</exception>
    public static ModelConfig FromJson(string json)
    {
        try
        {
            return (JsonSerializer.Deserialize<ModelConfig>(json, JsonOptions) ?? throw new InvalidDataException("The model config is null.")).Validate();
        }
        catch (Exception e) when (e is JsonException or ArgumentException)
        {
            throw new InvalidDataException($"Invalid model config: {e.Message}", e);
        }
    }

    private static int Positive(int value, string name) =>
        value > 0 ? value : throw new ArgumentOutOfRangeException(name, value, $"{name} must be positive.");

    private static float PositiveFinite(float value, string name) =>
        value > 0 && float.IsFinite(value) ? value : throw new ArgumentOutOfRangeException(name, value, $"{name} must be positive and finite.");

    private static T Defined<T>(T value, string name) where T : struct, Enum =>
        Enum.IsDefined(value) ? value : throw new ArgumentOutOfRangeException(name, value, $"Unknown {name}.");
}
