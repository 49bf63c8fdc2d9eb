namespace Keel.Native.Distributed;

/// <summary>
/// The ranks of one job and the small host values they exchange (losses, norms, fingerprints, error messages). Every rank
/// must make the same calls in the same order. <see cref="MpiRankGroup"/> is the MPI one; <see cref="ICollectives"/> adds
/// the device tensors.
/// </summary>
public interface IRankGroup
{
    /// <summary>This rank, from 0.</summary>
    int Rank { get; }

    /// <summary>The number of ranks.</summary>
    int Size { get; }

    /// <summary>Sums <paramref name="values"/> over every rank, in place.</summary>
    void AllReduceSum(Span<double> values);

    /// <summary>Gathers every rank's <paramref name="mine"/> into <paramref name="all"/>, rank r's at r · mine.Length.</summary>
    void AllGather(ReadOnlySpan<byte> mine, Span<byte> all);

    /// <summary>Copies <paramref name="bytes"/> from <paramref name="root"/> to every rank.</summary>
    void Broadcast(Span<byte> bytes, int root);

    /// <summary>Returns when every rank has called it.</summary>
    void Barrier();
}
