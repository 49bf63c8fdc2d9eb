using System.Diagnostics;
using Keel.Cuda.Driver;
using Keel.Cuda.Nccl;
using Keel.Native.Devices;
using Keel.Native.Numerics;

namespace Keel.Native.Distributed;

/// <summary>
/// <see cref="ICollectives"/> for a GPU: device tensors go through NCCL, queued on the device's stream (or, while
/// overlapping, on a second stream of the same context that waits for the device's stream through an event and is waited
/// for through the fence's event); host values go over the <see cref="IRankGroup"/> it is given (MPI). The caller keeps
/// the collectives of one communicator in one order on the GPU: a run on the second stream is waited for (its fence)
/// before a collective is queued on the device's stream, since NCCL kernels of one communicator running side by side can
/// wait on each other forever. Rank 0 makes the NCCL unique id and broadcasts it over MPI,
/// then every rank joins with its own GPU.
/// <para>
/// A collective whose peer died never completes on the GPU. <see cref="WaitForDevice"/> therefore polls the streams and
/// NCCL's asynchronous error rather than blocking in the driver, and on an error aborts the communicator (which stops the
/// collectives in flight) and throws it.
/// </para>
/// </summary>
public sealed class NcclCollectives : ICollectives
{
    /// <summary>How many fences stay valid at once (events recorded in turn).</summary>
    private const int FenceRing = 8;

    private readonly IRankGroup _host;
    private readonly CudaStream _stream;
    private readonly NcclCommunicator _nccl;
    private readonly CudaStream _side;
    private readonly CudaEvent _join;
    private readonly CudaEvent[] _fences = new CudaEvent[FenceRing];
    private int _fenceCount;
    private bool _overlapping;

    /// <summary>
    /// Joins this rank's GPU (the device of <paramref name="device"/>'s <see cref="IDevice.NativeStream"/>) to an NCCL
    /// communicator of every rank of <paramref name="host"/>, which carries the unique id and the host values (MPI, or
    /// <see cref="SingleRank"/> for one process).
    /// </summary>
    /// <exception cref="ArgumentException">The device has no CUDA stream (not a GPU).</exception>
    public NcclCollectives(IRankGroup host, IDevice device)
    {
        ArgumentNullException.ThrowIfNull(host);
        ArgumentNullException.ThrowIfNull(device);
        _host = host;
        _stream = device.NativeStream ?? throw new ArgumentException($"NCCL needs a GPU's stream; the {device.Kind} device has none.", nameof(device));
        var context = _stream.Context;
        Span<byte> id = stackalloc byte[NcclUniqueId.Bytes];
        if (host.Rank == 0) NcclCommunicator.CreateUniqueId().CopyTo(id);
        host.Broadcast(id, root: 0);
        var owned = new List<IDisposable>();
        try
        {
            _nccl = NcclCommunicator.InitRank(context, host.Size, NcclUniqueId.FromBytes(id), host.Rank);
            owned.Add(_nccl);
            _side = CudaStream.Create(context);
            owned.Add(_side);
            _join = CudaEvent.Create(context, timing: false);
            owned.Add(_join);
            for (var i = 0; i < FenceRing; i++)
            {
                _fences[i] = CudaEvent.Create(context, timing: false);
                owned.Add(_fences[i]);
            }
        }
        catch
        {
            for (var i = owned.Count - 1; i >= 0; i--) owned[i].Dispose();
            throw;
        }
        Description = $"NCCL {NcclCommunicator.Version}";
    }

    /// <inheritdoc />
    public int Rank => _nccl.Rank;


    /// <inheritdoc />
    public int Size => _nccl.Size;

    /// <inheritdoc />
    public string Description { get; }

    /// <inheritdoc />
    public void AllReduceSum(Tensor buffer)
    {
        var type = Reducible(buffer, nameof(buffer));
        Bind();
        _nccl.AllReduce(buffer.Address, buffer.Address, buffer.Length, type, NcclReduction.Sum, Stream);
    }

    /// <inheritdoc />
    public void ReduceScatterSum(Tensor send, Tensor shard)
    {
        var type = Reducible(send, nameof(send));
        CollectiveChecks.Blocks(send, shard, Size, nameof(shard));
        Bind();
        _nccl.ReduceScatter(send.Address, shard.Address, shard.Length, type, NcclReduction.Sum, Stream);
    }

    /// <inheritdoc />
    public void AllGather(Tensor shard, Tensor receive)
    {
        CollectiveChecks.Blocks(receive, shard, Size, nameof(shard));
        Bind();
        // Bytes: a gather moves data without reading it, and NCCL treats a send buffer at receive + rank · count as in place.
        _nccl.AllGather(shard.Address, receive.Address, shard.ByteLength, NcclDataType.Int8, Stream);
    }

    /// <inheritdoc />
    public void ReduceSum(Tensor send, Tensor receive, int root)
    {
        var type = Reducible(send, nameof(send));
        if (Rank == root) CollectiveChecks.SameShape(send, receive, nameof(receive));
        Bind();
        _nccl.Reduce(send.Address, Rank == root ? receive.Address : 0, send.Length, type, NcclReduction.Sum, root, Stream);
    }

    /// <inheritdoc />
    /// <remarks>The run's collectives form one NCCL group, launched together at <see cref="EndOverlap"/>.</remarks>
    public void BeginOverlap()
    {
        if (_overlapping) throw new InvalidOperationException("BeginOverlap was called twice without EndOverlap.");
        Bind();
        // The side stream starts where the device's stream is now: the collectives read what the queued work writes.
        _join.Record(_stream);
        _side.Wait(_join);
        NcclCommunicator.GroupStart();
        _overlapping = true;
    }

    /// <inheritdoc />
    public CollectiveFence EndOverlap()
    {
        if (!_overlapping) throw new InvalidOperationException("EndOverlap was called without BeginOverlap.");
        _overlapping = false;
        NcclCommunicator.GroupEnd();
        _fenceCount++;
        _fences[_fenceCount % FenceRing].Record(_side);
        return new CollectiveFence(_fenceCount);
    }

    /// <inheritdoc />
    public void Wait(CollectiveFence fence)
    {
        if (fence.Id == 0) return;
        if (fence.Id > _fenceCount || fence.Id <= _fenceCount - FenceRing)
            throw new ArgumentException($"Fence {fence.Id} is not one of the last {FenceRing} ({_fenceCount} made so far).", nameof(fence));
        Bind();
        _stream.Wait(_fences[fence.Id % FenceRing]);
    }

    /// <inheritdoc />
    /// <exception cref="NcclException">NCCL reported an asynchronous error (the communicator is aborted first).</exception>
    public void WaitForDevice()
    {
        Bind();
        var spin = Stopwatch.StartNew();
        while (!(_side.IsComplete() && _stream.IsComplete()))
        {
            if (_nccl.AsyncError() is { } error)
            {
                _nccl.Abort();
                throw error;
            }
            // Spin briefly (most waits are short), then give the core away between polls.
            if (spin.ElapsedMilliseconds < 2) Thread.SpinWait(64);
            else Thread.Sleep(1);
        }
    }

    /// <inheritdoc />
    public void AllReduceSum(Span<double> values) => _host.AllReduceSum(values);

    /// <inheritdoc />
    public void AllGather(ReadOnlySpan<byte> mine, Span<byte> all) => _host.AllGather(mine, all);

    /// <inheritdoc />
    public void Broadcast(Span<byte> bytes, int root) => _host.Broadcast(bytes, root);

    /// <inheritdoc />
    public void Barrier() => _host.Barrier();

    /// <inheritdoc />
    public void Abort() => _nccl.Abort();

    /// <inheritdoc />
    public void Dispose()
    {
        try
        {
            Bind();
            _side.Synchronize();
        }
        catch (Keel.Cuda.CudaException)
        {
            // A failed device cannot be drained; the handles are released all the same.
        }
        _nccl.Dispose();
        foreach (var fence in _fences) fence.Dispose();
        _join.Dispose();
        _side.Dispose();
    }

    private CudaStream Stream => _overlapping ? _side : _stream;

    private void Bind() => _stream.Context.MakeCurrent();

    private static NcclDataType Reducible(Tensor tensor, string name) => tensor.DType == DType.Float32
        ? NcclDataType.Float32
        : throw new ArgumentException($"NCCL sums Float32 tensors here; {name} is {tensor.DType}.", name);
}
