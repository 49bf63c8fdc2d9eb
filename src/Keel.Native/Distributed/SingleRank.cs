namespace Keel.Native.Distributed;

/// <summary>The rank group of a process on its own: rank 0 of 1, every exchange a copy or nothing.</summary>
public sealed class SingleRank : IRankGroup
{
    /// <summary>The one instance.</summary>
    public static SingleRank Instance { get; } = new();

    private SingleRank()
    {
    }

    /// <inheritdoc />
    public int Rank => 0;

    /// <inheritdoc />
    public int Size => 1;

    /// <inheritdoc />
    public void AllReduceSum(Span<double> values)
    {
    }

    /// <inheritdoc />
    public void AllGather(ReadOnlySpan<byte> mine, Span<byte> all) => mine.CopyTo(all);

    /// <inheritdoc />
    public void Broadcast(Span<byte> bytes, int root) => ArgumentOutOfRangeException.ThrowIfNotEqual(root, 0);

    /// <inheritdoc />
    public void Barrier()
    {
    }
}
