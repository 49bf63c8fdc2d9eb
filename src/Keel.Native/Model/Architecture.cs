namespace Keel.Native.Model;

/// <summary>How the sub-layers combine the residual stream x with their branch F (DESIGN.md section 1).</summary>
public enum Architecture
{
    /// <summary>
    /// Keel: x_{l+1} = N_out(alpha·x_l + F_l(N_in(x_l))) with alpha = L; the first attention sub-layer is
    /// x1 = x0 + Attn(N(x0)) (no alpha, no outer norm), the first FFN uses alpha = 1 with its outer norm, and the
    /// last sub-layer's normalized output feeds the LM head.
    /// </summary>
    Keel,

    /// <summary>Pre-LN: x_{l+1} = x_l + F_l(N(x_l)), with a final norm before the LM head.</summary>
    PreLN,

    /// <summary>Post-LN: x_{l+1} = N(x_l + F_l(x_l)).</summary>
    PostLN,

    /// <summary>
    /// DeepNorm: x_{l+1} = N(a·x_l + F_l(x_l)) with M = L/2 blocks and a = (2M)^(1/4); the FFN, V and O
    /// projections are initialized with their standard deviation scaled by (8M)^(-1/4).
    /// </summary>
    DeepNorm,
}
