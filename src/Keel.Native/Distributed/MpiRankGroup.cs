using Keel.Distributed.Mpi;

namespace Keel.Native.Distributed;

/// <summary>The host values of an <see cref="IRankGroup"/> over an MPI communicator (which the caller keeps).</summary>
public class MpiRankGroup : IRankGroup
{
    /// <summary>Exchanges over <paramref name="comm"/>.</summary>
    public MpiRankGroup(MpiCommunicator comm)
    {
        ArgumentNullException.ThrowIfNull(comm);
        Communicator = comm;
    }

    /// <summary>The communicator.</summary>
    protected MpiCommunicator Communicator { get; }

    /// <inheritdoc />
    public int Rank => Communicator.Rank;

    /// <inheritdoc />
    public int Size => Communicator.Size;

    /// <inheritdoc />
    public void AllReduceSum(Span<double> values) => Communicator.AllReduce(values, MpiOperation.Sum);

    /// <inheritdoc />
    public void AllGather(ReadOnlySpan<byte> mine, Span<byte> all) => Communicator.AllGather(mine, all);

    /// <inheritdoc />
    public void Broadcast(Span<byte> bytes, int root) => Communicator.Broadcast(bytes, root);

    /// <inheritdoc />
    public void Barrier() => Communicator.Barrier();
}
