namespace Keel.Native.Distributed;

/// <summary>
/// How a data-parallel run spreads its training state over <see cref="Ranks"/> ranks (ZeRO stage <see cref="Stage"/>):
/// 0 keeps everything on every rank; 1 shards AdamW's moments and the updates of the fp32 master weights (each rank
/// updates its own slice of the flat parameter buffer, and the slices are gathered back into every rank's full copy);
/// 2 shards the gradients too (each rank keeps the reduced gradients of its slice only, and the full gradients pass
/// through a few bucket slots during the backward).
/// <para>
/// The flat buffers are split into equal contiguous shards of the layout's flat index: their length is padded to a
/// multiple of <see cref="Ranks"/> · <see cref="Alignment"/> elements (the padding stays zero), and rank r owns
/// [r · <see cref="ShardLength"/>, (r + 1) · ShardLength). One rank at stage 1 or 2 is its own whole shard: the same
/// code paths as on several ranks, with copies for collectives (a run of one process uses <see cref="None"/>).
/// </para>
/// </summary>
public sealed record Sharding
{
    /// <summary>Every shard starts at a multiple of this many elements (256 bytes in fp32).</summary>
    public const int Alignment = 64;

    /// <summary>Creates a sharding of <paramref name="ranks"/> ranks at ZeRO stage <paramref name="stage"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Ranks is not positive, or the stage is not 0, 1 or 2.</exception>
    public Sharding(int ranks, int stage)
    {
        Ranks = ranks > 0 ? ranks : throw new ArgumentOutOfRangeException(nameof(ranks), ranks, "Ranks must be positive.");
        Stage = stage is >= 0 and <= 2 ? stage : throw new ArgumentOutOfRangeException(nameof(stage), stage, "The ZeRO stage must be 0, 1 or 2.");
    }

    /// <summary>One process: nothing sharded.</summary>
    public static Sharding None { get; } = new(1, 0);

    /// <summary>The number of data-parallel ranks.</summary>
    public int Ranks { get; }

    /// <summary>The requested ZeRO stage (0, 1 or 2).</summary>
    public int Stage { get; }

    /// <summary>True when the optimizer state and the master-weight updates are sharded (stage 1 or 2).</summary>
    public bool ShardsOptimizer => Stage >= 1;

    /// <summary>True when the gradients are sharded and pass through bucket slots (stage 2).</summary>
    public bool ShardsGradients => Stage == 2;

    /// <summary>Each rank's share of a global batch of <paramref name="globalBatch"/> sequences.</summary>
    /// <exception cref="ArgumentException">The batch does not divide among the ranks (named as <c>BatchSize</c>).</exception>
    public int LocalBatch(int globalBatch) =>
        globalBatch % Ranks == 0 ? globalBatch / Ranks
        : throw new ArgumentException($"BatchSize ({globalBatch}) does not divide among {Ranks} ranks; the batch is global, and each rank takes an equal share of its sequences.",
                                      "BatchSize");

    /// <summary><paramref name="length"/> rounded up to whole shards (itself with one rank).</summary>
    public long PaddedLength(long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (Ranks == 1) return length;
        long unit = (long)Ranks * Alignment;
        return (length + unit - 1) / unit * unit;
    }

    /// <summary>The elements of each rank's shard of a flat buffer of <paramref name="length"/> elements.</summary>
    public long ShardLength(long length) => PaddedLength(length) / Ranks;

    /// <summary>Rank <paramref name="rank"/>'s shard [start, start + length) of a flat buffer of <paramref name="length"/> elements (all of it with one rank).</summary>
    public (long Start, long Length) Shard(int rank, long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rank);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(rank, Ranks);
        var shard = ShardLength(length);
        return (rank * shard, shard);
    }

    /// <inheritdoc />
    public override string ToString() => $"{Ranks} rank{(Ranks == 1 ? "" : "s")}, ZeRO {Stage}";
}
