using System.Globalization;

namespace Keel.Native.Kernels.Launchers;

/// <summary>
/// The tile sizes <c>kernels/attention.cu</c> is specialized with for one head dimension, and the launch shapes and
/// shared memory that follow from them (the kernel's header comment explains each).
/// </summary>
/// <param name="HeadDim">Head dimension D.</param>
/// <param name="ForwardWarps">Warps of a forward block.</param>
/// <param name="ForwardRowTiles">16-row query tiles each forward warp owns (1 or 2).</param>
/// <param name="ForwardBlockN">Keys per forward key tile (a multiple of 16).</param>
/// <param name="BackwardWarps">Warps of a backward block, each owning 16 keys.</param>
/// <param name="BackwardBlockM">Queries per backward step (a multiple of 16).</param>
internal sealed record AttentionTiles(int HeadDim, int ForwardWarps, int ForwardRowTiles, int ForwardBlockN, int BackwardWarps, int BackwardBlockM)
{
    /// <summary>
    /// The tiles in use for <paramref name="headDim"/>. Forward: FlashAttention-2's shape, 4 warps of 32 query rows
    /// (128 per block) against 64-key tiles, q reread from smem each tile (no spills at 255 registers for D = 128);
    /// two blocks fit an SM. Backward: 8 warps of 16 keys (128 per block) against 64-query steps (4 warps at D = 16).
    /// The small head dimensions (16, 32) serve small models; they were not tuned.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="headDim"/> has no attention kernel.</exception>
    public static AttentionTiles For(int headDim) => headDim switch
    {
        32 or 64 or 128 => new(headDim, ForwardWarps: 4, ForwardRowTiles: 2, ForwardBlockN: 64, BackwardWarps: 8, BackwardBlockM: 64),
        // At D = 16 a dq tile has one 16-column slice, so each backward warp owns a whole 16-row tile of it.
        16 => new(headDim, ForwardWarps: 4, ForwardRowTiles: 2, ForwardBlockN: 64, BackwardWarps: 4, BackwardBlockM: 64),
        _ => throw new ArgumentException($"HeadDim {headDim} has no attention kernel; supported: 16, 32, 64, 128.", nameof(headDim)),
    };

    /// <summary>Query rows per forward block.</summary>
    public int ForwardBlockM => 16 * ForwardRowTiles * ForwardWarps;

    /// <summary>Threads per forward block.</summary>
    public int ForwardThreads => 32 * ForwardWarps;

    /// <summary>Dynamic shared memory of a forward block: q, and two stages of k and v, rows padded by 16 bytes.</summary>
    public int ForwardSharedBytes => (ForwardBlockM + 4 * ForwardBlockN) * RowBytes;

    /// <summary>Keys per backward block.</summary>
    public int BackwardBlockN => 16 * BackwardWarps;

    /// <summary>Threads per backward block.</summary>
    public int BackwardThreads => 32 * BackwardWarps;

    /// <summary>Dynamic shared memory of a backward block: k, v, two stages of q and dO, dsᵀ, two stages of lse and Dsum.</summary>
    public int BackwardSharedBytes => (2 * BackwardBlockN + 4 * BackwardBlockM) * RowBytes + BackwardBlockN * (BackwardBlockM + 8) * 2 + 16 * BackwardBlockM;

    /// <summary>The tile macros, as <c>-D</c> defines.</summary>
    public IEnumerable<KeyValuePair<string, string>> Defines =>
    [
        Define("FWD_WARPS", ForwardWarps), Define("FWD_M_TILES", ForwardRowTiles), Define("FWD_BLOCK_N", ForwardBlockN),
        Define("BWD_WARPS", BackwardWarps), Define("BWD_BLOCK_M", BackwardBlockM),
    ];

    private int RowBytes => (HeadDim + 8) * 2;

    private static KeyValuePair<string, string> Define(string name, int value) => new(name, value.ToString(CultureInfo.InvariantCulture));
}
