namespace Keel.Native.Model;

/// <summary>The two kinds of sub-layer; they alternate, attention first.</summary>
public enum SubLayerKind
{
    /// <summary>Causal grouped-query self-attention with RoPE.</summary>
    Attention,

    /// <summary>The feed-forward network.</summary>
    FeedForward,
}
