using Keel.Cuda.Driver;
using Keel.Cuda.Interop;

namespace Keel.Cuda.Nccl;

/// <summary>
/// An NCCL communicator (<c>ncclComm_t</c>) of one rank on one GPU, and the collectives Keel queues on it. Made by
/// <see cref="InitRank"/> on every rank with the same <see cref="NcclUniqueId"/>; destroyed on
/// <see cref="IDisposable.Dispose"/> (<c>ncclCommDestroy</c>), or torn down at once by <see cref="Abort"/>, which also stops
/// collectives in flight (so that a rank whose peer died does not wait for it forever). It claims its CUDA context like
/// every <see cref="ContextBoundHandle"/>.
/// <para>
/// Like library calls (see <see cref="CudaContext"/>), the collectives expect the caller to have made the communicator's
/// context current on the calling thread. They return once the work is queued on the stream; every rank must queue the
/// same collectives in the same order. Between <see cref="GroupStart"/> and <see cref="GroupEnd"/> they are launched
/// together. Errors the network or a peer causes later are reported by <see cref="AsyncError"/>.
/// </para>
/// </summary>
public sealed unsafe class NcclCommunicator : ContextBoundHandle
{
    private NcclCommunicator(CudaContext context, int rank, int size) : base(context)
    {
        Rank = rank;
        Size = size;
    }

    /// <summary>This rank, from 0.</summary>
    public int Rank { get; }

    /// <summary>The number of ranks.</summary>
    public int Size { get; }

    /// <inheritdoc />
    protected override string Description => $"NCCL communicator (rank {Rank} of {Size})";

    /// <summary>The version of the NCCL library (decoded from <c>ncclGetVersion</c>).</summary>
    /// <exception cref="CudaLibraryNotFoundException">libnccl is missing.</exception>
    public static Version Version
    {
        get
        {
            CudaLibraries.Require(CudaLibrary.Nccl);
            NcclNative.Check(NcclNative.ncclGetVersion(out var code), "ncclGetVersion");
            // NCCL_VERSION(X, Y, Z) is X·1000 + Y·100 + Z up to 2.8 and X·10000 + Y·100 + Z from 2.9 on.
            return code < 10000 ? new Version(code / 1000, code / 100 % 10, code % 100) : new Version(code / 10000, code / 100 % 100, code % 100);
        }
    }

    /// <summary>A new unique id (<c>ncclGetUniqueId</c>), made on rank 0 and sent to the others.</summary>
    /// <exception cref="CudaLibraryNotFoundException">libnccl is missing.</exception>
    public static NcclUniqueId CreateUniqueId()
    {
        CudaLibraries.Require(CudaLibrary.Nccl);
        NcclNative.Check(NcclNative.ncclGetUniqueId(out var id), "ncclGetUniqueId");
        return id;
    }

    /// <summary>
    /// Joins rank <paramref name="rank"/> of <paramref name="size"/> to the communicator of <paramref name="id"/> on the
    /// device of <paramref name="context"/> (<c>ncclCommInitRank</c>, which waits for every rank to join).
    /// </summary>
    public static NcclCommunicator InitRank(CudaContext context, int size, NcclUniqueId id, int rank)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(size);
        ArgumentOutOfRangeException.ThrowIfNegative(rank);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(rank, size);
        CudaLibraries.Require(CudaLibrary.Nccl);
        // NCCL takes the device from the calling thread's current context.
        context.MakeCurrent();
        var comm = new NcclCommunicator(context, rank, size);
        comm.Create((size, id, rank), static (s, out handle) => NcclNative.Check(NcclNative.ncclCommInitRank(out handle, s.size, s.id, s.rank), "ncclCommInitRank"));
        return comm;
    }

    /// <summary>Launches the collectives queued until <see cref="GroupEnd"/> together (<c>ncclGroupStart</c>).</summary>
    public static void GroupStart() => NcclNative.Check(NcclNative.ncclGroupStart(), "ncclGroupStart");

    /// <summary>Ends a group (<c>ncclGroupEnd</c>): its collectives are queued now.</summary>
    public static void GroupEnd() => NcclNative.Check(NcclNative.ncclGroupEnd(), "ncclGroupEnd");

    /// <summary>Queues the reduction of <paramref name="count"/> elements at <paramref name="send"/> over every rank into <paramref name="receive"/> on every rank (in place when they are equal).</summary>
    public void AllReduce(ulong send, ulong receive, long count, NcclDataType type, NcclReduction reduction, CudaStream stream) =>
        NcclNative.Check(NcclNative.ncclAllReduce((void*)send, (void*)receive, Count(count), (int)type, (int)reduction, this, stream), "ncclAllReduce", this);

    /// <summary>
    /// Queues the reduction of <see cref="Size"/> · <paramref name="receiveCount"/> elements at <paramref name="send"/> over
    /// every rank, block r landing on rank r at <paramref name="receive"/> (in place when receive = send + rank · count).
    /// </summary>
    public void ReduceScatter(ulong send, ulong receive, long receiveCount, NcclDataType type, NcclReduction reduction, CudaStream stream) =>
        NcclNative.Check(NcclNative.ncclReduceScatter((void*)send, (void*)receive, Count(receiveCount), (int)type, (int)reduction, this, stream), "ncclReduceScatter", this);

    /// <summary>
    /// Queues the gathering of <paramref name="sendCount"/> elements from every rank into <paramref name="receive"/>, rank r's
    /// at element r · sendCount (in place when send = receive + rank · sendCount).
    /// </summary>
    public void AllGather(ulong send, ulong receive, long sendCount, NcclDataType type, CudaStream stream) =>
        NcclNative.Check(NcclNative.ncclAllGather((void*)send, (void*)receive, Count(sendCount), (int)type, this, stream), "ncclAllGather", this);

    /// <summary>Queues the reduction of <paramref name="count"/> elements at <paramref name="send"/> over every rank into <paramref name="receive"/> on <paramref name="root"/> only.</summary>
    public void Reduce(ulong send, ulong receive, long count, NcclDataType type, NcclReduction reduction, int root, CudaStream stream)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)root, (uint)Size, nameof(root));
        NcclNative.Check(NcclNative.ncclReduce((void*)send, (void*)receive, Count(count), (int)type, (int)reduction, root, this, stream), "ncclReduce", this);
    }

    /// <summary>
    /// The error the communicator met while its collectives ran (<c>ncclCommGetAsyncError</c>: a peer that died, a network
    /// failure), or null while there is none.
    /// </summary>
    public NcclException? AsyncError()
    {
        NcclNative.Check(NcclNative.ncclCommGetAsyncError(this, out var error), "ncclCommGetAsyncError", this);
        return error is NcclNative.ncclSuccess or NcclNative.ncclInProgress ? null : NcclNative.Failure(error, "an NCCL collective (ncclCommGetAsyncError)", this);
    }

    /// <summary>
    /// Tears the communicator down at once (<c>ncclCommAbort</c>), stopping the collectives in flight; the handle is
    /// released by it. For a rank that must stop while its peers may never answer.
    /// </summary>
    public void Abort()
    {
        if (IsClosed || IsInvalid) return;
        Context.MakeCurrent();
        var result = NcclNative.ncclCommAbort(handle);
        // Aborted is released: the release must not destroy it again, and the claim on the context ends here.
        SetHandleAsInvalid();
        Context.RemoveDependent();
        NcclNative.Check(result, "ncclCommAbort");
    }

    /// <inheritdoc />
    private protected override bool Destroy(IntPtr handle) => Released(NcclNative.ncclCommDestroy(handle), "ncclCommDestroy");

    private static nuint Count(long count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        return (nuint)count;
    }
}
