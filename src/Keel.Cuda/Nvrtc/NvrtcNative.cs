using System.Runtime.InteropServices;
using Keel.Cuda.Interop;

namespace Keel.Cuda.Nvrtc;

/// <summary>
/// Raw NVRTC entry points (nvrtc.h). Every call returns an <c>nvrtcResult</c>; callers check it. A program is passed as
/// its <see cref="NvrtcProgram"/> handle (created by the marshaller), except to <c>nvrtcDestroyProgram</c>, which its
/// release calls with the raw value.
/// </summary>
internal static unsafe partial class NvrtcNative
{
    private const string Lib = CudaLibraries.NvrtcName;

    [LibraryImport(Lib)] internal static partial byte* nvrtcGetErrorString(int result);
    [LibraryImport(Lib)] internal static partial int nvrtcVersion(out int major, out int minor);
    [LibraryImport(Lib)] internal static partial int nvrtcGetNumSupportedArchs(out int count);
    [LibraryImport(Lib)] internal static partial int nvrtcGetSupportedArchs(int* archs);

    [LibraryImport(Lib)]
    internal static partial int nvrtcCreateProgram(out NvrtcProgram program, byte* source, byte* name, int headerCount, byte** headers, byte** includeNames);

    [LibraryImport(Lib)] internal static partial int nvrtcDestroyProgram(ref IntPtr program);
    [LibraryImport(Lib)] internal static partial int nvrtcCompileProgram(NvrtcProgram program, int optionCount, byte** options);
    [LibraryImport(Lib)] internal static partial int nvrtcGetProgramLogSize(NvrtcProgram program, out nuint size);
    [LibraryImport(Lib)] internal static partial int nvrtcGetProgramLog(NvrtcProgram program, byte* log);
    [LibraryImport(Lib)] internal static partial int nvrtcGetPTXSize(NvrtcProgram program, out nuint size);
    [LibraryImport(Lib)] internal static partial int nvrtcGetPTX(NvrtcProgram program, byte* ptx);
    [LibraryImport(Lib)] internal static partial int nvrtcGetCUBINSize(NvrtcProgram program, out nuint size);
    [LibraryImport(Lib)] internal static partial int nvrtcGetCUBIN(NvrtcProgram program, byte* cubin);

    /// <summary>Throws <see cref="CudaException"/> naming <paramref name="call"/> unless <paramref name="result"/> is NVRTC_SUCCESS.</summary>
    internal static void Check(int result, string call)
    {
        if (result != 0) throw new CudaException(call, result, ErrorName(result));
    }

    internal static string ErrorName(int result) =>
        Marshal.PtrToStringUTF8((IntPtr)nvrtcGetErrorString(result)) ?? $"NVRTC_ERROR_{result}";
}
