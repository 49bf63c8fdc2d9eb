namespace Keel.Native.Model;

/// <summary>The feed-forward branch.</summary>
public enum FeedForwardKind
{
    /// <summary>down(silu(gate(z)) ⊙ up(z)): three matrices, the Llama MLP.</summary>
    SwiGlu,

    /// <summary>down(GELU(up(z))), tanh approximation: two matrices.</summary>
    Gelu,
}
