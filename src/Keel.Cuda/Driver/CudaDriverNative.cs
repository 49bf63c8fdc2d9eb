using System.Runtime.InteropServices;
using Keel.Cuda.Interop;

namespace Keel.Cuda.Driver;

/// <summary>
/// Raw CUDA driver API entry points (cuda.h). Every call returns a <c>CUresult</c>; callers check it with
/// <see cref="Check"/>. A handle is passed as its <see cref="CudaHandle"/> type, so the marshaller holds it across the
/// call; the creating calls return the raw value into an object made before the call (the marshaller's own
/// <c>out</c> support would need a public parameterless constructor, that is an empty handle anyone could make), and
/// the destroying calls, made from <c>ReleaseHandle</c>, take the raw value, as a release must. <c>CUdevice</c> is
/// <see cref="int"/>; a <c>CUdeviceptr</c> inside an allocation is a <see cref="ulong"/> address, used under a
/// <see cref="HandleLease"/> on its <see cref="DeviceMemory"/> (64-bit builds only).
/// </summary>
/// <remarks>
/// cuda.h maps several API names onto versioned exports with macros (<c>#define cuMemAlloc cuMemAlloc_v2</c>);
/// the entry points below name the exported symbol. Each was checked to exist with this exact signature in the
/// headers of CUDA 11.8, 12.6 and 13.0. The legacy default-stream variants are bound, not the <c>_ptds</c>/<c>_ptsz</c>
/// per-thread ones.
/// </remarks>
internal static unsafe partial class CudaDriverNative
{
    private const string Lib = CudaLibraries.DriverName;

    internal const int CUDA_SUCCESS = 0;
    internal const int CUDA_ERROR_NO_DEVICE = 100;
    internal const int CUDA_ERROR_NOT_READY = 600;

    // Initialization, version, errors.
    [LibraryImport(Lib)] internal static partial int cuInit(uint flags);
    [LibraryImport(Lib)] internal static partial int cuDriverGetVersion(out int driverVersion);
    [LibraryImport(Lib)] internal static partial int cuGetErrorName(int error, out byte* name);
    [LibraryImport(Lib)] internal static partial int cuGetErrorString(int error, out byte* description);

    // Devices.
    [LibraryImport(Lib)] internal static partial int cuDeviceGetCount(out int count);
    [LibraryImport(Lib)] internal static partial int cuDeviceGet(out int device, int ordinal);
    [LibraryImport(Lib)] internal static partial int cuDeviceGetName(byte* name, int length, int device);
    [LibraryImport(Lib)] internal static partial int cuDeviceGetAttribute(out int value, int attribute, int device);
    [LibraryImport(Lib, EntryPoint = "cuDeviceTotalMem_v2")] internal static partial int cuDeviceTotalMem(out nuint bytes, int device);

    // Primary context.
    [LibraryImport(Lib)] internal static partial int cuDevicePrimaryCtxRetain(out IntPtr context, int device);
    [LibraryImport(Lib, EntryPoint = "cuDevicePrimaryCtxRelease_v2")] internal static partial int cuDevicePrimaryCtxRelease(int device);
    [LibraryImport(Lib)] internal static partial int cuCtxSetCurrent(CudaContext context);
    [LibraryImport(Lib)] internal static partial int cuCtxSynchronize();

    /// <summary>
    /// <c>cuCtxSetCurrent</c> by raw value, for the release of a <see cref="ContextBoundHandle"/> only: its claim keeps the
    /// context alive after the <see cref="CudaContext"/> object was disposed, which the overload above would refuse.
    /// </summary>
    [LibraryImport(Lib)] internal static partial int cuCtxSetCurrent(IntPtr claimedContext);

    // Memory. A CUdeviceptr is a 64-bit address; the allocation's SafeHandle holds it as its value.
    [LibraryImport(Lib, EntryPoint = "cuMemGetInfo_v2")] internal static partial int cuMemGetInfo(out nuint free, out nuint total);
    [LibraryImport(Lib, EntryPoint = "cuMemAlloc_v2")] internal static partial int cuMemAlloc(out IntPtr address, nuint byteCount);
    [LibraryImport(Lib, EntryPoint = "cuMemFree_v2")] internal static partial int cuMemFree(IntPtr address);
    [LibraryImport(Lib, EntryPoint = "cuMemAllocHost_v2")] internal static partial int cuMemAllocHost(out IntPtr pointer, nuint byteCount);
    [LibraryImport(Lib)] internal static partial int cuMemFreeHost(IntPtr pointer);
    [LibraryImport(Lib, EntryPoint = "cuMemsetD8_v2")] internal static partial int cuMemsetD8(ulong destination, byte value, nuint count);
    [LibraryImport(Lib, EntryPoint = "cuMemsetD32_v2")] internal static partial int cuMemsetD32(ulong destination, uint value, nuint count);
    [LibraryImport(Lib)] internal static partial int cuMemsetD8Async(ulong destination, byte value, nuint count, CudaStream stream);
    [LibraryImport(Lib)] internal static partial int cuMemsetD32Async(ulong destination, uint value, nuint count, CudaStream stream);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyHtoD_v2")] internal static partial int cuMemcpyHtoD(ulong destination, void* source, nuint byteCount);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoH_v2")] internal static partial int cuMemcpyDtoH(void* destination, ulong source, nuint byteCount);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoD_v2")] internal static partial int cuMemcpyDtoD(ulong destination, ulong source, nuint byteCount);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyHtoDAsync_v2")] internal static partial int cuMemcpyHtoDAsync(ulong destination, void* source, nuint byteCount, CudaStream stream);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoHAsync_v2")] internal static partial int cuMemcpyDtoHAsync(void* destination, ulong source, nuint byteCount, CudaStream stream);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoDAsync_v2")] internal static partial int cuMemcpyDtoDAsync(ulong destination, ulong source, nuint byteCount, CudaStream stream);

    // Streams and events.
    [LibraryImport(Lib)] internal static partial int cuStreamCreate(out IntPtr stream, uint flags);
    [LibraryImport(Lib, EntryPoint = "cuStreamDestroy_v2")] internal static partial int cuStreamDestroy(IntPtr stream);
    [LibraryImport(Lib)] internal static partial int cuStreamSynchronize(CudaStream stream);
    [LibraryImport(Lib)] internal static partial int cuStreamQuery(CudaStream stream);
    [LibraryImport(Lib)] internal static partial int cuStreamWaitEvent(CudaStream stream, CudaEvent evt, uint flags);
    [LibraryImport(Lib)] internal static partial int cuEventCreate(out IntPtr evt, uint flags);
    [LibraryImport(Lib)] internal static partial int cuEventRecord(CudaEvent evt, CudaStream stream);
    [LibraryImport(Lib)] internal static partial int cuEventSynchronize(CudaEvent evt);
    [LibraryImport(Lib, EntryPoint = "cuEventDestroy_v2")] internal static partial int cuEventDestroy(IntPtr evt);

    // CUDA 13's cuda.h maps cuEventElapsedTime onto cuEventElapsedTime_v2 (new in 12.8); the unversioned export
    // is the one every driver from 11.8 on has, so it is the one bound.
    [LibraryImport(Lib)] internal static partial int cuEventElapsedTime(out float milliseconds, CudaEvent start, CudaEvent end);

    // Modules, functions, launches. A CUfunction is owned by its module: calls with one run under a lease on the module.
    [LibraryImport(Lib)] internal static partial int cuModuleLoadData(out IntPtr module, void* image);
    [LibraryImport(Lib)] internal static partial int cuModuleUnload(IntPtr module);
    [LibraryImport(Lib)] internal static partial int cuModuleGetFunction(out IntPtr function, CudaModule module, byte* name);
    [LibraryImport(Lib)] internal static partial int cuFuncGetAttribute(out int value, int attribute, IntPtr function);
    [LibraryImport(Lib)] internal static partial int cuFuncSetAttribute(IntPtr function, int attribute, int value);

    [LibraryImport(Lib)]
    internal static partial int cuLaunchKernel(IntPtr function, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY,
                                               uint blockZ, uint sharedMemoryBytes, CudaStream stream, void** parameters, void** extra);

    // Graphs.
    [LibraryImport(Lib, EntryPoint = "cuStreamBeginCapture_v2")] internal static partial int cuStreamBeginCapture(CudaStream stream, int mode);
    [LibraryImport(Lib)] internal static partial int cuStreamEndCapture(CudaStream stream, out IntPtr graph);
    [LibraryImport(Lib)] internal static partial int cuGraphInstantiateWithFlags(out IntPtr graphExec, CudaGraph graph, ulong flags);
    [LibraryImport(Lib)] internal static partial int cuGraphLaunch(CudaGraphExec graphExec, CudaStream stream);
    [LibraryImport(Lib)] internal static partial int cuGraphDestroy(IntPtr graph);
    [LibraryImport(Lib)] internal static partial int cuGraphExecDestroy(IntPtr graphExec);

    /// <summary>Throws <see cref="CudaException"/> naming <paramref name="call"/> unless <paramref name="result"/> is CUDA_SUCCESS.</summary>
    internal static void Check(int result, string call)
    {
        if (result != CUDA_SUCCESS) throw Failure(result, call);
    }

    /// <summary>The exception for a failed <paramref name="call"/>, with the driver's name and description of the error.</summary>
    internal static CudaException Failure(int result, string call)
    {
        // cuGetErrorName fails (and leaves the pointer null) for codes this driver does not know.
        var name = cuGetErrorName(result, out var namePtr) == CUDA_SUCCESS && namePtr is not null
            ? Marshal.PtrToStringUTF8((IntPtr)namePtr)!
            : $"CUDA_ERROR_{result}";
        var description = cuGetErrorString(result, out var textPtr) == CUDA_SUCCESS && textPtr is not null
            ? Marshal.PtrToStringUTF8((IntPtr)textPtr)
            : null;
        return new CudaException(call, result, name, description);
    }
}

/// <summary>
/// The <c>CUdevice_attribute</c> values Keel reads (cuda.h; identical in CUDA 11.8, 12.6 and 13.0).
/// </summary>
internal static class DeviceAttribute
{
    internal const int MaxThreadsPerBlock = 1;
    internal const int ClockRate = 13;
    internal const int MultiprocessorCount = 16;
    internal const int MemoryClockRate = 36;
    internal const int GlobalMemoryBusWidth = 37;
    internal const int L2CacheSize = 38;
    internal const int ComputeCapabilityMajor = 75;
    internal const int ComputeCapabilityMinor = 76;
    internal const int MaxSharedMemoryPerMultiprocessor = 81;
    internal const int MaxSharedMemoryPerBlockOptIn = 97;
}

/// <summary>The <c>CUfunction_attribute</c> values Keel reads or sets (cuda.h).</summary>
internal static class FunctionAttribute
{
    internal const int MaxThreadsPerBlock = 0;
    internal const int SharedSizeBytes = 1;
    internal const int LocalSizeBytes = 3;
    internal const int NumRegs = 4;
    internal const int MaxDynamicSharedSizeBytes = 8;
}
