namespace Keel.Native.Model;

/// <summary>
/// How the sub-layers combine the residual stream x with their branch F: Keel or one of the baselines it is compared
/// with. What each one means (which norms run, alpha, the first-layer rules, the initialization) is written once, in
/// <see cref="ArchitectureRules"/> (the equations: docs/model.md).
/// </summary>
public enum Architecture
{
    /// <summary>Keel: x_{l+1} = N_out(alpha·x_l + F_l(N_in(x_l))), alpha = L, with first-layer rules (<see cref="ArchitectureRules.Keel"/>).</summary>
    Keel,

    /// <summary>Pre-LN: x_{l+1} = x_l + F_l(N_in(x_l)), with a final norm before the LM head (<see cref="ArchitectureRules.PreLN"/>).</summary>
    PreLN,

    /// <summary>Post-LN: x_{l+1} = N_out(x_l + F_l(x_l)) (<see cref="ArchitectureRules.PostLN"/>).</summary>
    PostLN,

    /// <summary>DeepNorm: x_{l+1} = N_out(alpha·x_l + F_l(x_l)), alpha = (2M)^(1/4), a scaled initialization (<see cref="ArchitectureRules.DeepNorm"/>).</summary>
    DeepNorm,
}

/// <summary>
/// Everything that tells the architectures apart, in one table. Sub-layer l of L (even l attention, odd l feed-forward;
/// M = L/2 blocks) computes
/// <code>
/// x_{l+1} = N_out( alpha_l · x_l + F_l( N_in(x_l) ) )
/// </code>
/// where a norm that does not run is the identity, x_0 is the embedding output and the LM head reads x_L (through the
/// final norm where there is one):
/// <code>
/// architecture  N_in    N_out       alpha_l                                final norm  init std of FFN, V, O
/// Keel          every   l ≥ 1       1 for l &lt; 2, else alpha = L           no          × 1
/// Pre-LN        every   none        1                                      yes         × 1
/// Post-LN       none    every       1                                      no          × 1
/// DeepNorm      none    every       alpha = (2M)^(1/4)                     no          × (8M)^(−1/4)
/// </code>
/// Keel's first-layer rules are those of its first two sub-layers: x_1 = x_0 + Attn(N_in(x_0)) (no alpha, no N_out) and
/// x_2 = N_out(x_1 + FFN(N_in(x_1))) (alpha 1). <see cref="ModelConfig.Alpha"/> overrides alpha where the architecture has one
/// (Keel, DeepNorm) and is refused where it has none (Pre-LN, Post-LN).
/// <para>
/// The model runs the norms fused with the residual sum: the op that ends sub-layer l computes y = N_out(alpha_l·x_l + f_l)
/// and, where the next sub-layer has an input norm (or after the last, where there is a final norm), z = N_in(y), the
/// next branch's operand (<see cref="HasNextInputNorm"/>). An input stage (l = −1: alpha 1, no N_out) forms z_0 from x_0.
/// </para>
/// </summary>
/// <example>
/// <code>
/// var rules = ArchitectureRules.For(Architecture.Keel);
/// rules.Alpha(subLayer: 0, residualScale: 8);   // 1: the first attention sub-layer adds x_0 unscaled
/// rules.HasOutputNorm(subLayer: 0);             // false
/// rules.Alpha(subLayer: 5, residualScale: 8);   // 8
/// </code>
/// </example>
public sealed class ArchitectureRules
{
    private const int Never = int.MaxValue;

    private ArchitectureRules()
    {
    }

    /// <summary>Keel: alpha = L from the third sub-layer on; x_1 = x_0 + Attn(N_in(x_0)) has no output norm.</summary>
    public static ArchitectureRules Keel { get; } = new()
    {
        Architecture = Architecture.Keel,
        Equation = "x_{l+1} = N_out(alpha·x_l + F_l(N_in(x_l))), alpha = L",
        InputNorms = true,
        FirstOutputNorm = 1,
        FirstScaledSubLayer = 2,
        DefaultAlpha = subLayers => subLayers,
    };

    /// <summary>Pre-LN: input norms only, and a final norm before the LM head; no residual scale.</summary>
    public static ArchitectureRules PreLN { get; } = new()
    {
        Architecture = Architecture.PreLN,
        Equation = "x_{l+1} = x_l + F_l(N_in(x_l))",
        InputNorms = true,
        FinalNorm = true,
    };

    /// <summary>Post-LN: output norms only; no residual scale.</summary>
    public static ArchitectureRules PostLN { get; } = new()
    {
        Architecture = Architecture.PostLN,
        Equation = "x_{l+1} = N_out(x_l + F_l(x_l))",
        FirstOutputNorm = 0,
    };

    /// <summary>DeepNorm: output norms, alpha = (2M)^(1/4) on every sub-layer, FFN, V and O initialized with std × (8M)^(−1/4).</summary>
    public static ArchitectureRules DeepNorm { get; } = new()
    {
        Architecture = Architecture.DeepNorm,
        Equation = "x_{l+1} = N_out(alpha·x_l + F_l(x_l)), alpha = (2M)^(1/4)",
        FirstOutputNorm = 0,
        FirstScaledSubLayer = 0,
        DefaultAlpha = subLayers => (float)Math.Pow(2.0 * Blocks(subLayers), 0.25),
        InitScaleOf = subLayers => Math.Pow(8.0 * Blocks(subLayers), -0.25),
    };

    /// <summary>The rules of <paramref name="architecture"/>.</summary>
    public static ArchitectureRules For(Architecture architecture) => architecture switch
    {
        Architecture.Keel => Keel,
        Architecture.PreLN => PreLN,
        Architecture.PostLN => PostLN,
        Architecture.DeepNorm => DeepNorm,
        _ => throw new ArgumentOutOfRangeException(nameof(architecture), architecture, "Unknown architecture."),
    };

    /// <summary>Which architecture these are the rules of.</summary>
    public Architecture Architecture { get; private init; }

    /// <summary>Its sub-layer, as an equation.</summary>
    public string Equation { get; private init; } = "";

    /// <summary>True when every branch reads N_in(x_l) (Keel, Pre-LN); false when it reads x_l itself.</summary>
    public bool InputNorms { get; private init; }

    /// <summary>Sub-layers l ≥ this end with the output norm N_out (Keel 1, Post-LN and DeepNorm 0); <see cref="int.MaxValue"/> when none does.</summary>
    public int FirstOutputNorm { get; private init; } = Never;

    /// <summary>True when a final norm (<c>model.norm</c>) sits between the last sub-layer and the LM head (Pre-LN).</summary>
    public bool FinalNorm { get; private init; }

    /// <summary>Sub-layers l ≥ this scale x_l by alpha; the ones before add it unscaled (Keel 2, DeepNorm 0); <see cref="int.MaxValue"/> without a residual scale.</summary>
    public int FirstScaledSubLayer { get; private init; } = Never;

    /// <summary>True when the architecture has a residual scale alpha (Keel, DeepNorm), so <see cref="ModelConfig.Alpha"/> applies.</summary>
    public bool HasResidualScale => DefaultAlpha is not null;

    /// <summary>True when sub-layer <paramref name="subLayer"/>'s branch reads N_in(x_l).</summary>
    public bool HasInputNorm(int subLayer) => InputNorms;

    /// <summary>True when sub-layer <paramref name="subLayer"/> normalizes its residual sum (false for the input stage, −1).</summary>
    public bool HasOutputNorm(int subLayer) => subLayer >= FirstOutputNorm;

    /// <summary>
    /// True when the op that ends sub-layer <paramref name="subLayer"/> (−1: the input stage) also forms the next branch's
    /// operand z = N_in(y): the next sub-layer has an input norm, or this is the last of <paramref name="subLayers"/> and a
    /// final norm follows. Otherwise the next operand is y itself.
    /// </summary>
    public bool HasNextInputNorm(int subLayer, int subLayers) => subLayer + 1 < subLayers ? HasInputNorm(subLayer + 1) : FinalNorm;

    /// <summary>alpha_l of sub-layer <paramref name="subLayer"/> (−1: the input stage, 1): <paramref name="residualScale"/>, or 1 before <see cref="FirstScaledSubLayer"/>.</summary>
    public float Alpha(int subLayer, float residualScale) => subLayer >= FirstScaledSubLayer ? residualScale : 1f;

    /// <summary>
    /// The residual scale of a model of <paramref name="subLayers"/> sub-layers: <paramref name="alpha"/> when given, else
    /// the architecture's default (Keel L, DeepNorm (2M)^(1/4)); 1 without a residual scale.
    /// </summary>
    public float ResidualScale(int subLayers, float? alpha) => alpha ?? DefaultAlpha?.Invoke(subLayers) ?? 1f;

    /// <summary>The factor on the initialization std of the FFN, V and O projections for <paramref name="subLayers"/> sub-layers (DeepNorm (8M)^(−1/4), otherwise 1).</summary>
    public double InitScale(int subLayers) => InitScaleOf?.Invoke(subLayers) ?? 1;

    /// <inheritdoc />
    public override string ToString() => $"{Architecture}: {Equation}";

    /// <summary>alpha's default for L sub-layers; null without a residual scale.</summary>
    private Func<int, float>? DefaultAlpha { get; init; }

    /// <summary>The init-std factor of FFN, V and O for L sub-layers; null for 1.</summary>
    private Func<int, double>? InitScaleOf { get; init; }

    private static int Blocks(int subLayers) => subLayers / 2;
}
