using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Keel.Distributed.Mpi;

/// <summary>
/// An MPI communicator (<c>MPI_Comm</c>) and the collectives Keel runs on it. Made by <see cref="MpiSession"/>, which sets
/// <c>MPI_ERRORS_RETURN</c> on it, so every failed call becomes an <see cref="MpiException"/> naming the call. An owned
/// communicator is freed on <see cref="IDisposable.Dispose"/> (<c>MPI_Comm_free</c>), before the session finalizes MPI;
/// the finalizer never calls MPI (MPI is not to be entered from a second thread while the first may be in it), so one
/// that reaches it is reported as a leak and left to <c>MPI_Finalize</c>.
/// <para>
/// Collectives must be called by every rank of the communicator in the same order. Buffers are host memory: spans, or the
/// raw addresses of the CPU and emulated devices' tensors. MPI counts are 32-bit: a call that would move more than
/// 2³¹ − 1 elements is refused with a message, before any rank enters it.
/// </para>
/// </summary>
public sealed unsafe class MpiCommunicator : SafeHandle
{
    private readonly bool _owned;

    internal MpiCommunicator(IntPtr handle, bool ownsHandle) : base(IntPtr.Zero, ownsHandle)
    {
        _owned = ownsHandle;
        SetHandle(handle);
        MpiNative.Check(MpiNative.MPI_Comm_rank(this, out var rank), "MPI_Comm_rank");
        MpiNative.Check(MpiNative.MPI_Comm_size(this, out var size), "MPI_Comm_size");
        Rank = rank;
        Size = size;
    }

    /// <summary>Raised on the finalizer thread for each owned communicator that was never disposed.</summary>
    public static event Action<string>? LeakDetected;

    /// <summary>The calling process's rank in this communicator, from 0.</summary>
    public int Rank { get; }

    /// <summary>The number of ranks.</summary>
    public int Size { get; }

    /// <inheritdoc />
    public override bool IsInvalid => handle == IntPtr.Zero;

    /// <summary>Blocks until every rank has called it (<c>MPI_Barrier</c>).</summary>
    public void Barrier() => MpiNative.Check(MpiNative.MPI_Barrier(this), "MPI_Barrier");

    /// <summary>Copies <paramref name="buffer"/> from rank <paramref name="root"/> to every rank (<c>MPI_Bcast</c>).</summary>
    public void Broadcast<T>(Span<T> buffer, int root) where T : unmanaged
    {
        CheckRoot(root);
        fixed (T* p = buffer)
            MpiNative.Check(MpiNative.MPI_Bcast(p, Count(buffer.Length * (long)sizeof(T), "MPI_Bcast"), MpiHandles.Of(MpiDatatype.Byte), root, this), "MPI_Bcast");
    }

    /// <summary>Reduces <paramref name="values"/> over every rank in place (<c>MPI_Allreduce</c> with <c>MPI_IN_PLACE</c>).</summary>
    public void AllReduce<T>(Span<T> values, MpiOperation operation) where T : unmanaged
    {
        fixed (T* p = values)
            AllReduce(MpiNative.InPlace, (IntPtr)p, values.Length, TypeOf<T>(), operation);
    }

    /// <summary>Gathers every rank's <paramref name="mine"/> into <paramref name="all"/>, rank r's at r · mine.Length (<c>MPI_Allgather</c>).</summary>
    public void AllGather<T>(ReadOnlySpan<T> mine, Span<T> all) where T : unmanaged
    {
        if (all.Length != (long)mine.Length * Size)
            throw new ArgumentException($"{all.Length} elements to receive; {Size} ranks × {mine.Length} need {(long)mine.Length * Size}.", nameof(all));
        fixed (T* send = mine)
        fixed (T* receive = all)
            AllGather((IntPtr)send, (IntPtr)receive, mine.Length * sizeof(T), MpiDatatype.Byte);
    }

    /// <summary>
    /// Reduces <paramref name="count"/> elements at <paramref name="send"/> over every rank into <paramref name="receive"/> on
    /// every rank (<c>MPI_Allreduce</c>); <paramref name="send"/> may be <see cref="InPlace"/>, which reduces
    /// <paramref name="receive"/> itself.
    /// </summary>
    public void AllReduce(IntPtr send, IntPtr receive, long count, MpiDatatype type, MpiOperation operation) =>
        MpiNative.Check(MpiNative.MPI_Allreduce((void*)send, (void*)receive, Count(count, "MPI_Allreduce"), MpiHandles.Of(type), MpiHandles.Of(operation), this), "MPI_Allreduce");

    /// <summary>
    /// Reduces <see cref="Size"/> · <paramref name="count"/> elements at <paramref name="send"/> over every rank and leaves
    /// block r (elements r · count ..) on rank r at <paramref name="receive"/> (<c>MPI_Reduce_scatter_block</c>).
    /// </summary>
    public void ReduceScatter(IntPtr send, IntPtr receive, long count, MpiDatatype type, MpiOperation operation) =>
        MpiNative.Check(MpiNative.MPI_Reduce_scatter_block((void*)send, (void*)receive, Count(count, "MPI_Reduce_scatter_block"), MpiHandles.Of(type), MpiHandles.Of(operation), this),
                        "MPI_Reduce_scatter_block");

    /// <summary>
    /// Gathers <paramref name="count"/> elements from every rank's <paramref name="send"/> into <paramref name="receive"/>,
    /// rank r's at element r · count (<c>MPI_Allgather</c>); with <paramref name="send"/> = <see cref="InPlace"/> each rank's
    /// part is already in its place in <paramref name="receive"/>.
    /// </summary>
    public void AllGather(IntPtr send, IntPtr receive, long count, MpiDatatype type)
    {
        var n = Count(count, "MPI_Allgather");
        var t = MpiHandles.Of(type);
        // With MPI_IN_PLACE the send count and type are ignored.
        MpiNative.Check(MpiNative.MPI_Allgather((void*)send, n, t, (void*)receive, n, t, this), "MPI_Allgather");
    }

    /// <summary>Reduces <paramref name="count"/> elements at <paramref name="send"/> over every rank into <paramref name="receive"/> on <paramref name="root"/> only (<c>MPI_Reduce</c>).</summary>
    public void Reduce(IntPtr send, IntPtr receive, long count, MpiDatatype type, MpiOperation operation, int root)
    {
        CheckRoot(root);
        MpiNative.Check(MpiNative.MPI_Reduce((void*)send, (void*)receive, Count(count, "MPI_Reduce"), MpiHandles.Of(type), MpiHandles.Of(operation), root, this), "MPI_Reduce");
    }

    /// <summary>Open MPI's <c>MPI_IN_PLACE</c>, for the send buffer of <see cref="AllReduce(IntPtr, IntPtr, long, MpiDatatype, MpiOperation)"/> and <see cref="AllGather(IntPtr, IntPtr, long, MpiDatatype)"/>.</summary>
    public static IntPtr InPlace => MpiNative.InPlace;

    /// <summary>The MPI element type of <typeparamref name="T"/>.</summary>
    public static MpiDatatype TypeOf<T>() where T : unmanaged =>
        typeof(T) == typeof(float) ? MpiDatatype.Float32
        : typeof(T) == typeof(double) ? MpiDatatype.Float64
        : typeof(T) == typeof(int) ? MpiDatatype.Int32
        : typeof(T) == typeof(long) ? MpiDatatype.Int64
        : typeof(T) == typeof(byte) ? MpiDatatype.Byte
        : throw new ArgumentException($"{typeof(T).Name} has no MPI datatype here (float, double, int, long, byte).", nameof(T));

    /// <inheritdoc />
    protected override bool ReleaseHandle()
    {
        // After MPI_Finalize every communicator is gone already, and MPI may not be called.
        if (MpiNative.MPI_Finalized(out var finalized) != MpiNative.MPI_SUCCESS || finalized != 0) return true;
        var comm = handle;
        return MpiNative.MPI_Comm_free(ref comm) == MpiNative.MPI_SUCCESS;
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (!disposing && !IsInvalid && !IsClosed && _owned)
        {
            var message = "Keel.Distributed: an MPI communicator was not disposed; it was left to MPI_Finalize.";
            Trace.TraceWarning(message);
            LeakDetected?.Invoke(message);
            SetHandleAsInvalid();
        }
        base.Dispose(disposing);
    }

    private void CheckRoot(int root) => ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)root, (uint)Size, nameof(root));

    private static int Count(long count, string call)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        return count <= int.MaxValue
            ? (int)count
            : throw new ArgumentOutOfRangeException(nameof(count), count, $"{call} takes at most {int.MaxValue} elements per call (MPI counts are 32-bit).");
    }
}
