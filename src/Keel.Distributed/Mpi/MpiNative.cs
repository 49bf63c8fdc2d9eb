using System.Runtime.InteropServices;

namespace Keel.Distributed.Mpi;

/// <summary>
/// Raw MPI entry points (mpi.h, Open MPI 4.1). Every call returns an MPI error code; callers check it with
/// <see cref="Check"/>, which works because <see cref="MpiSession"/> sets <c>MPI_ERRORS_RETURN</c> on every communicator
/// it makes (the default handler aborts the job on the first error, before any message of ours). Communicators are
/// <see cref="MpiCommunicator"/> SafeHandles. Datatypes, operations, the error handler and the info object are predefined
/// handles: addresses of objects libmpi exports, which live as long as the process and are passed as <see cref="IntPtr"/>
/// (<see cref="MpiHandles"/>). Buffers are raw addresses: host memory, including the memory of the CPU and emulated
/// devices.
/// </summary>
internal static unsafe partial class MpiNative
{
    private const string Lib = MpiLibrary.Name;

    internal const int MPI_SUCCESS = 0;
    internal const int MPI_THREAD_SERIALIZED = 2;
    internal const int MPI_COMM_TYPE_SHARED = 0;
    internal const int MPI_MAX_ERROR_STRING = 256;
    internal const int MPI_MAX_PROCESSOR_NAME = 256;
    internal const int MPI_MAX_LIBRARY_VERSION_STRING = 256;

    /// <summary>Open MPI's <c>MPI_IN_PLACE</c>: <c>(void*)1</c>.</summary>
    internal static readonly IntPtr InPlace = 1;

    [LibraryImport(Lib)] internal static partial int MPI_Init_thread(int* argc, byte*** argv, int required, out int provided);
    [LibraryImport(Lib)] internal static partial int MPI_Initialized(out int flag);
    [LibraryImport(Lib)] internal static partial int MPI_Finalized(out int flag);
    [LibraryImport(Lib)] internal static partial int MPI_Finalize();
    [LibraryImport(Lib)] internal static partial int MPI_Abort(MpiCommunicator comm, int errorCode);
    [LibraryImport(Lib)] internal static partial int MPI_Error_string(int errorCode, byte* text, out int length);
    [LibraryImport(Lib)] internal static partial int MPI_Get_library_version(byte* text, out int length);
    [LibraryImport(Lib)] internal static partial int MPI_Get_processor_name(byte* text, out int length);

    [LibraryImport(Lib)] internal static partial int MPI_Comm_rank(MpiCommunicator comm, out int rank);
    [LibraryImport(Lib)] internal static partial int MPI_Comm_size(MpiCommunicator comm, out int size);
    [LibraryImport(Lib)] internal static partial int MPI_Comm_set_errhandler(MpiCommunicator comm, IntPtr errorHandler);
    [LibraryImport(Lib)] internal static partial int MPI_Comm_dup(MpiCommunicator comm, out IntPtr newComm);
    [LibraryImport(Lib)] internal static partial int MPI_Comm_split_type(MpiCommunicator comm, int splitType, int key, IntPtr info, out IntPtr newComm);
    [LibraryImport(Lib)] internal static partial int MPI_Comm_free(ref IntPtr comm);

    [LibraryImport(Lib)] internal static partial int MPI_Barrier(MpiCommunicator comm);
    [LibraryImport(Lib)] internal static partial int MPI_Bcast(void* buffer, int count, IntPtr datatype, int root, MpiCommunicator comm);
    [LibraryImport(Lib)] internal static partial int MPI_Allreduce(void* send, void* receive, int count, IntPtr datatype, IntPtr op, MpiCommunicator comm);
    [LibraryImport(Lib)] internal static partial int MPI_Reduce(void* send, void* receive, int count, IntPtr datatype, IntPtr op, int root, MpiCommunicator comm);
    [LibraryImport(Lib)] internal static partial int MPI_Reduce_scatter_block(void* send, void* receive, int receiveCount, IntPtr datatype, IntPtr op, MpiCommunicator comm);
    [LibraryImport(Lib)] internal static partial int MPI_Allgather(void* send, int sendCount, IntPtr sendType, void* receive, int receiveCount, IntPtr receiveType, MpiCommunicator comm);

    /// <summary>Throws <see cref="MpiException"/> naming <paramref name="call"/> unless <paramref name="code"/> is MPI_SUCCESS.</summary>
    internal static void Check(int code, string call)
    {
        if (code != MPI_SUCCESS) throw new MpiException(call, code, ErrorText(code));
    }

    /// <summary>MPI's own description of <paramref name="code"/> (<c>MPI_Error_string</c>), or the bare number when it has none.</summary>
    internal static string ErrorText(int code)
    {
        var text = stackalloc byte[MPI_MAX_ERROR_STRING];
        return MPI_Error_string(code, text, out var length) == MPI_SUCCESS && length > 0
            ? Marshal.PtrToStringUTF8((IntPtr)text, length)
            : $"MPI error {code}";
    }

    /// <summary>A string an MPI call writes into a buffer of <paramref name="capacity"/> bytes.</summary>
    internal static string Text(delegate*<byte*, out int, int> call, int capacity, string name)
    {
        var text = stackalloc byte[capacity];
        Check(call(text, out var length), name);
        return Marshal.PtrToStringUTF8((IntPtr)text, Math.Clamp(length, 0, capacity)).TrimEnd('\0', '\n', ' ');
    }
}

/// <summary>Open MPI's predefined handles, resolved from libmpi's exports once.</summary>
internal static class MpiHandles
{
    private static readonly Lazy<IntPtr> Float = new(() => MpiLibrary.Global("ompi_mpi_float"));
    private static readonly Lazy<IntPtr> Double = new(() => MpiLibrary.Global("ompi_mpi_double"));
    private static readonly Lazy<IntPtr> Byte = new(() => MpiLibrary.Global("ompi_mpi_byte"));
    private static readonly Lazy<IntPtr> Int = new(() => MpiLibrary.Global("ompi_mpi_int"));
    private static readonly Lazy<IntPtr> LongLong = new(() => MpiLibrary.Global("ompi_mpi_long_long_int"));
    private static readonly Lazy<IntPtr> Sum = new(() => MpiLibrary.Global("ompi_mpi_op_sum"));
    private static readonly Lazy<IntPtr> Max = new(() => MpiLibrary.Global("ompi_mpi_op_max"));
    private static readonly Lazy<IntPtr> Min = new(() => MpiLibrary.Global("ompi_mpi_op_min"));

    /// <summary><c>MPI_COMM_WORLD</c>.</summary>
    public static IntPtr CommWorld => MpiLibrary.Global("ompi_mpi_comm_world");

    /// <summary><c>MPI_ERRORS_RETURN</c>.</summary>
    public static IntPtr ErrorsReturn => MpiLibrary.Global("ompi_mpi_errors_return");

    /// <summary><c>MPI_INFO_NULL</c>.</summary>
    public static IntPtr InfoNull => MpiLibrary.Global("ompi_mpi_info_null");

    /// <summary>The <c>MPI_Datatype</c> of <paramref name="type"/>.</summary>
    public static IntPtr Of(MpiDatatype type) => type switch
    {
        MpiDatatype.Byte => Byte.Value,
        MpiDatatype.Int32 => Int.Value,
        MpiDatatype.Int64 => LongLong.Value,
        MpiDatatype.Float32 => Float.Value,
        MpiDatatype.Float64 => Double.Value,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "Unknown MPI datatype."),
    };

    /// <summary>The <c>MPI_Op</c> of <paramref name="operation"/>.</summary>
    public static IntPtr Of(MpiOperation operation) => operation switch
    {
        MpiOperation.Sum => Sum.Value,
        MpiOperation.Max => Max.Value,
        MpiOperation.Min => Min.Value,
        _ => throw new ArgumentOutOfRangeException(nameof(operation), operation, "Unknown MPI operation."),
    };
}

/// <summary>The element types the bindings reduce and move.</summary>
public enum MpiDatatype
{
    /// <summary>Bytes (<c>MPI_BYTE</c>), for data that is moved, never reduced: bf16 weights, text, hashes.</summary>
    Byte,

    /// <summary><c>MPI_INT</c>.</summary>
    Int32,

    /// <summary><c>MPI_LONG_LONG</c>.</summary>
    Int64,

    /// <summary><c>MPI_FLOAT</c>.</summary>
    Float32,

    /// <summary><c>MPI_DOUBLE</c>.</summary>
    Float64,
}

/// <summary>The reductions the bindings use.</summary>
public enum MpiOperation
{
    /// <summary><c>MPI_SUM</c>.</summary>
    Sum,

    /// <summary><c>MPI_MAX</c>.</summary>
    Max,

    /// <summary><c>MPI_MIN</c>.</summary>
    Min,
}
