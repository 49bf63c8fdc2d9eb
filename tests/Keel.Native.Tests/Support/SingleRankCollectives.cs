namespace Keel.Native.Tests.Support;

/// <summary>
/// The collectives of a job of one rank over a device's own memory, without MPI: every reduction and gather is a copy (or
/// nothing, in place). Lets a test run the trainer's data-parallel path in process.
/// </summary>
internal sealed class SingleRankCollectives(IDevice device) : ICollectives
{
    public int Rank => 0;

    public int Size => 1;

    public string Description => "one rank, no MPI";

    public void AllReduceSum(Tensor buffer)
    {
    }

    public void ReduceScatterSum(Tensor send, Tensor shard) => device.Copy(send, shard);

    public void AllGather(Tensor shard, Tensor receive)
    {
        if (shard.Address != receive.Address) device.Copy(shard, receive);
    }

    public void ReduceSum(Tensor send, Tensor receive, int root) => device.Copy(send, receive);

    public void BeginOverlap()
    {
    }

    public CollectiveFence EndOverlap() => default;

    public void Wait(CollectiveFence fence)
    {
    }

    public void WaitForDevice() => device.Synchronize();

    // The host side is the library's own rank group of one process.
    public void AllReduceSum(Span<double> values) => SingleRank.Instance.AllReduceSum(values);

    public void AllGather(ReadOnlySpan<byte> mine, Span<byte> all) => SingleRank.Instance.AllGather(mine, all);

    public void Broadcast(Span<byte> bytes, int root) => SingleRank.Instance.Broadcast(bytes, root);

    public void Barrier() => SingleRank.Instance.Barrier();

    public void Abort()
    {
    }

    public void Dispose()
    {
    }
}
