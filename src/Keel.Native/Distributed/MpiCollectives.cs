using Keel.Distributed.Mpi;
using Keel.Native.Devices;
using Keel.Native.Numerics;

namespace Keel.Native.Distributed;

/// <summary>
/// <see cref="ICollectives"/> over MPI, for devices whose memory is host memory (the CPU and emulated devices): a tensor's
/// address is handed to MPI as it is. Every operation is synchronous, so there is nothing to overlap, and the device is
/// synchronized first so that MPI reads what the device's queued work wrote.
/// <para>
/// MPI reduces each element over the ranks in an order fixed by the rank count and the message size, the same in every
/// run, so runs with the same ranks are reproducible bit for bit; every rank receives the same bits.
/// </para>
/// </summary>
public sealed class MpiCollectives : MpiRankGroup, ICollectives
{
    private readonly IDevice _device;

    /// <summary>Runs on <paramref name="comm"/> (which the caller keeps) for tensors of <paramref name="device"/>.</summary>
    /// <exception cref="ArgumentException">The device's memory is not host memory (a GPU: use NCCL).</exception>
    public MpiCollectives(MpiCommunicator comm, IDevice device) : base(comm)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (device.NativeStream is not null)
            throw new ArgumentException("MPI collectives run on host memory; a GPU's tensors go through NCCL.", nameof(device));
        _device = device;
    }

    /// <inheritdoc />
    public string Description => "MPI over host memory";

    /// <inheritdoc />
    public void AllReduceSum(Tensor buffer)
    {
        var type = Reducible(buffer, nameof(buffer));
        _device.Synchronize();
        Communicator.AllReduce(MpiCommunicator.InPlace, Address(buffer), buffer.Length, type, MpiOperation.Sum);
    }

    /// <inheritdoc />
    public void ReduceScatterSum(Tensor send, Tensor shard)
    {
        var type = Reducible(send, nameof(send));
        CollectiveChecks.Blocks(send, shard, Size, nameof(shard));
        _device.Synchronize();
        Communicator.ReduceScatter(Address(send), Address(shard), shard.Length, type, MpiOperation.Sum);
    }

    /// <inheritdoc />
    public void AllGather(Tensor shard, Tensor receive)
    {
        CollectiveChecks.Blocks(receive, shard, Size, nameof(shard));
        _device.Synchronize();
        var bytes = shard.ByteLength;
        var send = Address(shard) == Address(receive) + (nint)(Rank * bytes) ? MpiCommunicator.InPlace : Address(shard);
        Communicator.AllGather(send, Address(receive), bytes, MpiDatatype.Byte);
    }

    /// <inheritdoc />
    public void ReduceSum(Tensor send, Tensor receive, int root)
    {
        var type = Reducible(send, nameof(send));
        if (Rank == root) CollectiveChecks.SameShape(send, receive, nameof(receive));
        _device.Synchronize();
        Communicator.Reduce(Address(send), Rank == root ? Address(receive) : 0, send.Length, type, MpiOperation.Sum, root);
    }

    /// <inheritdoc />
    public void BeginOverlap()
    {
    }

    /// <inheritdoc />
    public CollectiveFence EndOverlap() => default;

    /// <inheritdoc />
    public void Wait(CollectiveFence fence)
    {
    }

    /// <inheritdoc />
    public void WaitForDevice() => _device.Synchronize();

    /// <inheritdoc />
    public void Abort()
    {
    }

    /// <inheritdoc />
    public void Dispose()
    {
    }

    private static nint Address(Tensor tensor) => (nint)tensor.Address;

    private static MpiDatatype Reducible(Tensor tensor, string name) => tensor.DType switch
    {
        DType.Float32 => MpiDatatype.Float32,
        DType.Float64 => MpiDatatype.Float64,
        _ => throw new ArgumentException($"MPI sums Float32 or Float64 tensors here; {name} is {tensor.DType}.", name),
    };
}

/// <summary>The shape rules every <see cref="ICollectives"/> checks before a rank enters a collective.</summary>
internal static class CollectiveChecks
{
    /// <summary><paramref name="whole"/> is <paramref name="ranks"/> blocks of <paramref name="block"/>, of one element type.</summary>
    public static void Blocks(Tensor whole, Tensor block, int ranks, string name)
    {
        if (whole.DType != block.DType) throw new ArgumentException($"{name} is {block.DType}; the whole buffer is {whole.DType}.", name);
        if (whole.Length != block.Length * ranks)
            throw new ArgumentException($"{name} has {block.Length} elements; {ranks} ranks' blocks make {block.Length * ranks}, not the {whole.Length} of the whole buffer.", name);
    }

    /// <summary><paramref name="other"/> has <paramref name="tensor"/>'s element type and length.</summary>
    public static void SameShape(Tensor tensor, Tensor other, string name)
    {
        if (other.DType != tensor.DType || other.Length != tensor.Length)
            throw new ArgumentException($"{name} is {other.DType}[{other.Length}]; it must be {tensor.DType}[{tensor.Length}].", name);
    }
}
