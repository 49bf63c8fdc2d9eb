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
    // In order of preference. Forward: FlashAttention-2's shape, 4 warps of 32 query rows (128 per block) against 64-key
    // tiles, q reread from smem each tile (no spills at 255 registers for D = 128), two blocks per SM where 227 KiB or
    // 163 KiB allow; then 32-key tiles, then 64-row blocks. Backward: 8 warps of 16 keys (128 per block) against
    // 64-query steps; then 4 warps against 32-query steps; then 2 warps. At D = 16 a dq tile has one 16-column slice, so
    // each backward warp owns a whole 16-row tile of it (warps = BM / 16). The small head dimensions (16, 32) serve small
    // models; they were not tuned.
    private static readonly (int Warps, int RowTiles, int BlockN)[] ForwardCandidates = [(4, 2, 64), (4, 2, 32), (4, 1, 32)];
    private static readonly (int Warps, int BlockM)[] BackwardCandidates = [(8, 64), (4, 32), (2, 32)];
    private static readonly (int Warps, int BlockM)[] BackwardCandidatesD16 = [(4, 64), (2, 32)];

    /// <summary>The head dimensions there are tiles for.</summary>
    public static IReadOnlyList<int> HeadDims { get; } = [16, 32, 64, 128];

    /// <summary>
    /// The tiles for <paramref name="headDim"/> on a device whose blocks may use <paramref name="maxSharedBytes"/> of
    /// shared memory after the opt-in: the first forward and the first backward candidate that fit. At D = 128 the
    /// preferred tiles need 102 KiB (forward) and 155 KiB (backward): they fit sm_80 (163 KiB) and sm_90 (227 KiB), while
    /// sm_86 and sm_89 (99 KiB) get 32-key forward tiles (68 KiB) and 64-key, 32-query backward blocks (74 KiB).
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="headDim"/> has no attention kernel, or no tiles fit <paramref name="maxSharedBytes"/>.</exception>
    public static AttentionTiles For(int headDim, int maxSharedBytes)
    {
        if (!HeadDims.Contains(headDim))
            throw new ArgumentException($"HeadDim {headDim} has no attention kernel; supported: {string.Join(", ", HeadDims)}.", nameof(headDim));
        var backwardCandidates = headDim == 16 ? BackwardCandidatesD16 : BackwardCandidates;
        var forward = ForwardCandidates.Select(f => (Tiles: f, Bytes: ForwardBytes(headDim, f.Warps * 16 * f.RowTiles, f.BlockN)))
                                       .FirstOrDefault(f => f.Bytes <= maxSharedBytes, (default, -1));
        var backward = backwardCandidates.Select(c => (Tiles: c, Bytes: BackwardBytes(headDim, 16 * c.Warps, c.BlockM)))
                                         .FirstOrDefault(c => c.Bytes <= maxSharedBytes, (default, -1));
        if (forward.Bytes < 0 || backward.Bytes < 0)
        {
            var (f, b) = (ForwardCandidates[^1], backwardCandidates[^1]);
            var least = Math.Max(ForwardBytes(headDim, f.Warps * 16 * f.RowTiles, f.BlockN), BackwardBytes(headDim, 16 * b.Warps, b.BlockM));
            throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
                $"Attention at HeadDim {headDim} needs at least {least} bytes of shared memory per block, and this device allows {maxSharedBytes}."), nameof(maxSharedBytes));
        }
        return new(headDim, forward.Tiles.Warps, forward.Tiles.RowTiles, forward.Tiles.BlockN, backward.Tiles.Warps, backward.Tiles.BlockM);
    }

    /// <summary>Every tile set <see cref="For"/> gives <paramref name="headDim"/> on the target architectures.</summary>
    public static IReadOnlyList<AttentionTiles> AllFor(int headDim) =>
        [.. GpuArchitecture.All.Select(a => For(headDim, a.SharedMemoryPerBlockOptIn)).Distinct()];

    /// <summary>Query rows per forward block.</summary>
    public int ForwardBlockM => 16 * ForwardRowTiles * ForwardWarps;

    /// <summary>Threads per forward block.</summary>
    public int ForwardThreads => 32 * ForwardWarps;

    /// <summary>Dynamic shared memory of a forward block: q, and two stages of k and v, rows padded by 16 bytes.</summary>
    public int ForwardSharedBytes => ForwardBytes(HeadDim, ForwardBlockM, ForwardBlockN);

    /// <summary>Keys per backward block.</summary>
    public int BackwardBlockN => 16 * BackwardWarps;

    /// <summary>Threads per backward block.</summary>
    public int BackwardThreads => 32 * BackwardWarps;

    /// <summary>
    /// Dynamic shared memory of a backward block: k, v, two stages of q and dO, dsᵀ, two stages of the row statistics
    /// (lse log2 e, Dsum), and 16 bytes for the block's key-block ticket.
    /// </summary>
    public int BackwardSharedBytes => BackwardBytes(HeadDim, BackwardBlockN, BackwardBlockM);

    /// <summary>The tile macros, as <c>-D</c> defines.</summary>
    public IEnumerable<KeyValuePair<string, string>> Defines =>
    [
        Define("FWD_WARPS", ForwardWarps), Define("FWD_M_TILES", ForwardRowTiles), Define("FWD_BLOCK_N", ForwardBlockN),
        Define("BWD_WARPS", BackwardWarps), Define("BWD_BLOCK_M", BackwardBlockM),
    ];

    private static int RowBytes(int headDim) => (headDim + 8) * 2;

    private static int ForwardBytes(int headDim, int blockM, int blockN) => (blockM + 4 * blockN) * RowBytes(headDim);

    private static int BackwardBytes(int headDim, int blockN, int blockM) =>
        (2 * blockN + 4 * blockM) * RowBytes(headDim) + blockN * (blockM + 8) * 2 + 16 * blockM + 16;

    private static KeyValuePair<string, string> Define(string name, int value) => new(name, value.ToString(CultureInfo.InvariantCulture));
}
