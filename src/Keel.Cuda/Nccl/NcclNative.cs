using System.Runtime.InteropServices;
using Keel.Cuda.Driver;
using Keel.Cuda.Interop;

namespace Keel.Cuda.Nccl;

/// <summary>
/// Raw NCCL entry points (nccl.h, NCCL 2.13 and later). Every call returns an <c>ncclResult_t</c>; callers check it with
/// <see cref="Check"/>. Communicators are <see cref="NcclCommunicator"/> and streams <see cref="CudaStream"/> SafeHandles
/// (a <c>cudaStream_t</c> is a <c>CUstream</c>); device buffers are raw device addresses. The collectives return once the
/// work is queued on the stream.
/// </summary>
internal static unsafe partial class NcclNative
{
    private const string Lib = CudaLibraries.NcclName;

    internal const int ncclSuccess = 0;
    internal const int ncclInProgress = 7;

    /// <summary>The names of <c>ncclResult_t</c>'s values, by value.</summary>
    private static readonly string[] ResultNames =
        ["ncclSuccess", "ncclUnhandledCudaError", "ncclSystemError", "ncclInternalError", "ncclInvalidArgument", "ncclInvalidUsage", "ncclRemoteError", "ncclInProgress", "ncclTimeout"];

    [LibraryImport(Lib)] internal static partial int ncclGetVersion(out int version);
    [LibraryImport(Lib)] internal static partial int ncclGetUniqueId(out NcclUniqueId uniqueId);
    [LibraryImport(Lib)] internal static partial int ncclCommInitRank(out IntPtr comm, int ranks, NcclUniqueId commId, int rank);
    [LibraryImport(Lib)] internal static partial int ncclCommDestroy(IntPtr comm);
    [LibraryImport(Lib)] internal static partial int ncclCommAbort(IntPtr comm);
    [LibraryImport(Lib)] internal static partial int ncclCommGetAsyncError(NcclCommunicator comm, out int asyncError);
    [LibraryImport(Lib)] internal static partial byte* ncclGetErrorString(int result);
    [LibraryImport(Lib)] internal static partial byte* ncclGetLastError(NcclCommunicator comm);
    [LibraryImport(Lib, EntryPoint = "ncclGetLastError")] internal static partial byte* ncclGetLastErrorWithoutComm(IntPtr comm);

    [LibraryImport(Lib)] internal static partial int ncclGroupStart();
    [LibraryImport(Lib)] internal static partial int ncclGroupEnd();

    [LibraryImport(Lib)]
    internal static partial int ncclAllReduce(void* send, void* receive, nuint count, int dataType, int op, NcclCommunicator comm, CudaStream stream);

    [LibraryImport(Lib)]
    internal static partial int ncclReduceScatter(void* send, void* receive, nuint receiveCount, int dataType, int op, NcclCommunicator comm, CudaStream stream);

    [LibraryImport(Lib)]
    internal static partial int ncclAllGather(void* send, void* receive, nuint sendCount, int dataType, NcclCommunicator comm, CudaStream stream);

    [LibraryImport(Lib)]
    internal static partial int ncclReduce(void* send, void* receive, nuint count, int dataType, int op, int root, NcclCommunicator comm, CudaStream stream);

    /// <summary>Throws <see cref="NcclException"/> naming <paramref name="call"/> unless <paramref name="result"/> is ncclSuccess.</summary>
    internal static void Check(int result, string call, NcclCommunicator? comm = null)
    {
        if (result != ncclSuccess) throw Failure(result, call, comm);
    }

    /// <summary>The exception for a failed <paramref name="call"/>: NCCL's name and description of the result, then its last-error text.</summary>
    internal static NcclException Failure(int result, string call, NcclCommunicator? comm)
    {
        var name = (uint)result < (uint)ResultNames.Length ? ResultNames[result] : $"ncclResult {result}";
        var description = Marshal.PtrToStringUTF8((IntPtr)ncclGetErrorString(result));
        var last = LastError(comm);
        return new NcclException(call, result, name, string.IsNullOrWhiteSpace(last) ? description : $"{description}; {last.Trim()}");
    }

    /// <summary><c>ncclGetLastError</c> for <paramref name="comm"/> (or the thread's last error without one); empty when this NCCL predates it (2.13).</summary>
    private static string LastError(NcclCommunicator? comm)
    {
        try
        {
            var text = comm is { IsInvalid: false, IsClosed: false } ? ncclGetLastError(comm) : ncclGetLastErrorWithoutComm(IntPtr.Zero);
            return Marshal.PtrToStringUTF8((IntPtr)text) ?? "";
        }
        catch (EntryPointNotFoundException)
        {
            return "";
        }
    }
}
