using Keel.Cuda.Driver;
using Keel.Native.Devices;
using Keel.Native.Numerics;
using Keel.Native.Reference;

namespace Keel.Native.Kernels.Launchers;

/// <summary>
/// Launches <c>kernels/attention.cu</c>: flash attention forward and backward on tensor cores, one specialization
/// per head dimension (<see cref="HeadDims"/>) and mask (causal or not), each with the tile sizes
/// <see cref="AttentionTiles.For"/> chooses for the runtime's shared-memory limit. A specialization is compiled and
/// loaded the first time a call needs it. The backward's scratch lives in the device's <see cref="KernelWorkspace"/>
/// (<see cref="KernelScratch.AttentionBackward"/>, sized by <see cref="BackwardWorkspaceElements"/>).
/// </summary>
internal sealed class AttentionKernels
{
    /// <summary>The head dimensions the kernels are specialized for.</summary>
    public static IReadOnlyList<int> HeadDims => AttentionTiles.HeadDims;

    /// <summary>Every specialization: each head dimension, causal and not, with the tiles of each target architecture.</summary>
    public static IReadOnlyList<KernelSpec> Specs { get; } =
        [.. HeadDims.SelectMany(d => AttentionTiles.AllFor(d).SelectMany(tiles => new[] { false, true }.Select(causal => Spec(tiles, causal))))];

    private const int PrepareThreads = 256;
    private readonly IKernelRuntime _runtime;
    private readonly KernelWorkspace _workspace;
    private readonly Variant?[] _variants = new Variant?[HeadDims.Count * 2];
    private readonly AttentionTiles?[] _tiles = new AttentionTiles?[HeadDims.Count];

    /// <summary>Launches on <paramref name="runtime"/>, with the backward's scratch in <paramref name="workspace"/>; nothing is compiled until the first call.</summary>
    public AttentionKernels(IKernelRuntime runtime, KernelWorkspace workspace)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        ArgumentNullException.ThrowIfNull(workspace);
        _runtime = runtime;
        _workspace = workspace;
    }

    /// <summary>The specialization for <paramref name="tiles"/> and the mask.</summary>
    public static KernelSpec Spec(AttentionTiles tiles, bool causal)
    {
        ArgumentNullException.ThrowIfNull(tiles);
        return new KernelSpec("attention.cu",
        [
            new("HEAD_DIM", tiles.HeadDim.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            new("CAUSAL", causal ? "1" : "0"),
            .. tiles.Defines,
        ]);
    }

    /// <summary>
    /// Float32 elements of <see cref="KernelScratch.AttentionBackward"/> <see cref="Backward"/> uses (a memory planner
    /// counts it): dq partial sums in fp32, the rows' (lse, dO·o) pairs, the dq order counters and key-block tickets; the
    /// most any target architecture's tiles need (they differ only in the number of counters).
    /// </summary>
    public static long BackwardWorkspaceElements(AttentionOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return AttentionTiles.AllFor(options.HeadDim).Max(tiles => new WorkspaceLayout(options, tiles).Total);
    }

    /// <summary>
    /// output = softmax(scale q kᵀ, masked) v and logSumExp, as <see cref="Attention.Forward{T}"/>: q, output bf16
    /// [B, S, Hq, D]; k, v bf16 [B, S, Hkv, D]; logSumExp fp32 [B, Hq, S].
    /// </summary>
    /// <exception cref="ArgumentException">A type, shape, head dimension or alignment is not supported.</exception>
    public void Forward(AttentionOptions options, Tensor q, Tensor k, Tensor v, Tensor output, Tensor logSumExp)
    {
        CheckInputs(options, q, k, v);
        CheckQueryShaped(options, output);
        Require.DType(logSumExp, DType.Float32);
        Require.Shape(logSumExp, new TensorShape(options.Batch, options.QueryHeads, options.Sequence));
        if (options.Batch > LaunchShape.MaxGridYZ)
            throw new ArgumentException($"Batch {options.Batch} exceeds the {LaunchShape.MaxGridYZ} the forward grid allows.", nameof(options));
        foreach (var input in (ReadOnlySpan<Tensor>)[q, k, v])
        {
            Overlap.RequireDisjoint(output, input);
            Overlap.RequireDisjoint(logSumExp, input);
        }
        Overlap.RequireDisjoint(logSumExp, output);

        var kernels = Load(options);
        var tiles = kernels.Tiles;
        int seq = options.Sequence, heads = options.QueryHeads, kvHeads = options.KvHeads;
        var scaleLog2 = (float)(options.EffectiveScale * Math.Log2(Math.E));
        var blocks = (seq + tiles.ForwardBlockM - 1) / tiles.ForwardBlockM;
        var cost = new KernelCost(2.0 * (2 * q.Length + k.Length + v.Length) + 4.0 * logSumExp.Length, options.ForwardFlops);
        kernels.Forward.Launch(new LaunchShape(new Dim3(blocks, heads, options.Batch), new Dim3(tiles.ForwardThreads), tiles.ForwardSharedBytes),
                               [q, k, v, output, logSumExp, seq, heads, kvHeads, scaleLog2], cost);
    }

    /// <summary>
    /// dq, dk, dv (overwritten; dk and dv summed over the query heads that share them) from the forward's tensors and
    /// dOutput, as <see cref="Attention.Backward{T}"/>; deterministic.
    /// </summary>
    /// <exception cref="ArgumentException">A type, shape, head dimension or alignment is not supported.</exception>
    public void Backward(AttentionOptions options, Tensor q, Tensor k, Tensor v, Tensor output, Tensor logSumExp, Tensor dOutput,
                         Tensor dq, Tensor dk, Tensor dv)
    {
        CheckInputs(options, q, k, v);
        CheckQueryShaped(options, output);
        CheckQueryShaped(options, dOutput);
        CheckQueryShaped(options, dq);
        CheckKvShaped(options, dk);
        CheckKvShaped(options, dv);
        Require.DType(logSumExp, DType.Float32);
        Require.Shape(logSumExp, new TensorShape(options.Batch, options.QueryHeads, options.Sequence));
        foreach (var input in (ReadOnlySpan<Tensor>)[q, k, v, output, logSumExp, dOutput])
        {
            Overlap.RequireDisjoint(dq, input);
            Overlap.RequireDisjoint(dk, input);
            Overlap.RequireDisjoint(dv, input);
        }
        Overlap.RequireDisjoint(dk, dq);
        Overlap.RequireDisjoint(dv, dq);
        Overlap.RequireDisjoint(dv, dk);
        var tiles = Tiles(options.HeadDim);
        var keyBlocks = (options.Sequence + tiles.BackwardBlockN - 1) / tiles.BackwardBlockN;
        if (keyBlocks > LaunchShape.MaxGridYZ || (long)options.Batch * options.KvHeads > int.MaxValue)
            throw new ArgumentException($"Sequence {options.Sequence} or batch x kv heads is beyond the backward grid's limits.", nameof(options));

        var layout = new WorkspaceLayout(options, tiles);
        var scratch = _workspace.Get(KernelScratch.AttentionBackward, DType.Float32, layout.Total);

        var kernels = Load(options);
        var stats = KernelArgument.Pointer(scratch.Address + (ulong)layout.StatsOffset * 4);
        var order = KernelArgument.Pointer(scratch.Address + (ulong)layout.OrderOffset * 4);
        int seq = options.Sequence, heads = options.QueryHeads, kvHeads = options.KvHeads, orderCount = (int)layout.OrderCount;
        var scale = (float)options.EffectiveScale;
        var scaleLog2 = (float)(options.EffectiveScale * Math.Log2(Math.E));
        long rows = (long)options.Batch * seq * heads;

        // One thread per 8 elements of o; that is more threads than counters and tickets to clear (D / 8 >= 2 per row).
        var prepareThreads = rows * (options.HeadDim / 8);
        kernels.Prepare.Launch(LaunchShapes.Blocks((prepareThreads + PrepareThreads - 1) / PrepareThreads, PrepareThreads),
            [output, dOutput, logSumExp, stats, order, rows, seq, heads, orderCount],
            new KernelCost(4.0 * q.Length + 12.0 * rows + 4.0 * orderCount, 2.0 * q.Length));

        var cost = new KernelCost(2.0 * (3 * q.Length + 2 * (k.Length + v.Length)) + 8.0 * rows, 2.5 * options.ForwardFlops);
        kernels.Backward.Launch(new LaunchShape(new Dim3(options.Batch * kvHeads, keyBlocks), new Dim3(tiles.BackwardThreads), tiles.BackwardSharedBytes),
            [q, k, v, dOutput, stats, scratch, order, dq, dk, dv, seq, heads, kvHeads, scale, scaleLog2], cost);
    }

    private Variant Load(AttentionOptions options)
    {
        var index = HeadDimIndex(options.HeadDim) * 2 + (options.Causal ? 1 : 0);
        return _variants[index] ??= new Variant(_runtime, Tiles(options.HeadDim), options.Causal);
    }

    /// <summary>
    /// The tiles of a checked head dimension for this runtime's shared-memory limit, made once (a launch allocates
    /// nothing); a device whose blocks cannot hold any is refused, naming the bytes.
    /// </summary>
    private AttentionTiles Tiles(int headDim) =>
        _tiles[HeadDimIndex(headDim)] ??= AttentionTiles.For(headDim, _runtime.MaxSharedMemoryPerBlockOptInBytes);

    private static int HeadDimIndex(int headDim)
    {
        for (var i = 0; i < HeadDims.Count; i++)
            if (HeadDims[i] == headDim) return i;
        return -1;
    }

    private static void CheckInputs(AttentionOptions options, Tensor q, Tensor k, Tensor v)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.QueryHeads % options.KvHeads != 0)
            throw new ArgumentException($"QueryHeads ({options.QueryHeads}) must be a multiple of KvHeads ({options.KvHeads}).", nameof(options));
        if (HeadDimIndex(options.HeadDim) < 0)
            throw new ArgumentException($"HeadDim {options.HeadDim} has no attention kernel; supported: {string.Join(", ", HeadDims)}.", nameof(options));
        CheckQueryShaped(options, q);
        CheckKvShaped(options, k);
        CheckKvShaped(options, v);
    }

    private static void CheckQueryShaped(AttentionOptions options, Tensor tensor, [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(tensor))] string? name = null)
    {
        Require.DType(tensor, DType.BFloat16, name);
        Require.Shape(tensor, new TensorShape(options.Batch, options.Sequence, options.QueryHeads, options.HeadDim), name);
        Require.Aligned(tensor, 16, name);
    }

    private static void CheckKvShaped(AttentionOptions options, Tensor tensor, [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(tensor))] string? name = null)
    {
        Require.DType(tensor, DType.BFloat16, name);
        Require.Shape(tensor, new TensorShape(options.Batch, options.Sequence, options.KvHeads, options.HeadDim), name);
        Require.Aligned(tensor, 16, name);
    }

    /// <summary>
    /// Where the parts of the backward scratch start, in Float32 elements (each 16-byte aligned): dq partials, the row
    /// statistics (a pair per row, rows of each (batch, head) padded to even), the counters and then the tickets.
    /// </summary>
    private readonly struct WorkspaceLayout
    {
        public WorkspaceLayout(AttentionOptions options, AttentionTiles tiles)
        {
            long rows = (long)options.Batch * options.QueryHeads * options.Sequence;
            long paddedRows = (long)options.Batch * options.QueryHeads * (options.Sequence + (options.Sequence & 1));
            var queryBlocks = (options.Sequence + tiles.BackwardBlockM - 1) / tiles.BackwardBlockM;
            StatsOffset = RoundUp(rows * options.HeadDim);
            OrderOffset = StatsOffset + RoundUp(2 * paddedRows);
            OrderCount = (long)options.Batch * options.QueryHeads * queryBlocks + (long)options.Batch * options.KvHeads;
            Total = OrderOffset + RoundUp(OrderCount);
        }

        public long StatsOffset { get; }
        public long OrderOffset { get; }
        public long OrderCount { get; }
        public long Total { get; }

        private static long RoundUp(long elements) => (elements + 3) / 4 * 4;
    }

    private sealed class Variant
    {
        public Variant(IKernelRuntime runtime, AttentionTiles tiles, bool causal)
        {
            var spec = Spec(tiles, causal);
            Tiles = tiles;
            Forward = runtime.Load(spec, "keel_attention_forward");
            Prepare = runtime.Load(spec, "keel_attention_backward_prepare");
            Backward = runtime.Load(spec, "keel_attention_backward");
            Forward.AllowDynamicSharedMemory(Tiles.ForwardSharedBytes);
            Backward.AllowDynamicSharedMemory(Tiles.BackwardSharedBytes);
        }

        public AttentionTiles Tiles { get; }
        public KernelFunction Forward { get; }
        public KernelFunction Prepare { get; }
        public KernelFunction Backward { get; }
    }
}
