using System.Runtime.InteropServices;
using Keel.Cuda.Cublas;
using Keel.Cuda.Driver;
using Keel.Cuda.Interop;

namespace Keel.Cuda.CublasLt;

/// <summary>
/// Raw cuBLASLt entry points (cublasLt.h). Every signature, attribute value and struct layout here is the same in the
/// headers of CUDA 11.8 and 12.x. All calls but the version return a <c>cublasStatus_t</c>. Handles and descriptors are
/// passed as their <see cref="CudaHandle"/> types, except in the destroying calls and in the creation of the public
/// <see cref="CublasLtHandle"/> and <see cref="CublasLtMatmulPlan"/> (see <c>CudaDriverNative</c>); the internal
/// descriptors, whose types have the public parameterless constructor the marshaller needs, are created through it.
/// </summary>
internal static unsafe partial class CublasLtNative
{
    private const string Lib = CudaLibraries.CublasLtName;

    internal const int CUBLAS_STATUS_SUCCESS = 0;
    internal const int CUBLAS_STATUS_NOT_SUPPORTED = 15;

    [LibraryImport(Lib)] internal static partial int cublasLtCreate(out IntPtr handle);
    [LibraryImport(Lib)] internal static partial int cublasLtDestroy(IntPtr handle);
    [LibraryImport(Lib)] internal static partial nuint cublasLtGetVersion();
    [LibraryImport(Lib)] internal static partial byte* cublasLtGetStatusName(int status);
    [LibraryImport(Lib)] internal static partial byte* cublasLtGetStatusString(int status);

    [LibraryImport(Lib)] internal static partial int cublasLtMatmulDescCreate(out IntPtr desc, CublasComputeType computeType, CudaDataType scaleType);
    [LibraryImport(Lib)] internal static partial int cublasLtMatmulDescDestroy(IntPtr desc);
    [LibraryImport(Lib)] internal static partial int cublasLtMatmulDescSetAttribute(CublasLtMatmulPlan desc, MatmulDescAttribute attribute, void* value, nuint valueBytes);

    [LibraryImport(Lib)] internal static partial int cublasLtMatrixLayoutCreate(out CublasLtMatrixLayout layout, CudaDataType type, ulong rows, ulong cols, long ld);
    [LibraryImport(Lib)] internal static partial int cublasLtMatrixLayoutDestroy(IntPtr layout);
    [LibraryImport(Lib)] internal static partial int cublasLtMatrixLayoutSetAttribute(CublasLtMatrixLayout layout, MatrixLayoutAttribute attribute, void* value, nuint valueBytes);

    [LibraryImport(Lib)] internal static partial int cublasLtMatmulPreferenceCreate(out CublasLtMatmulPreference preference);
    [LibraryImport(Lib)] internal static partial int cublasLtMatmulPreferenceDestroy(IntPtr preference);
    [LibraryImport(Lib)] internal static partial int cublasLtMatmulPreferenceSetAttribute(CublasLtMatmulPreference preference, MatmulPreferenceAttribute attribute, void* value, nuint valueBytes);

    [LibraryImport(Lib)]
    internal static partial int cublasLtMatmulAlgoGetHeuristic(CublasLtHandle handle, CublasLtMatmulPlan operation, CublasLtMatrixLayout aLayout,
                                                               CublasLtMatrixLayout bLayout, CublasLtMatrixLayout cLayout, CublasLtMatrixLayout dLayout,
                                                               CublasLtMatmulPreference preference, int requestedCount,
                                                               MatmulHeuristicResult* results, out int returnedCount);

    [LibraryImport(Lib)]
    internal static partial int cublasLtMatmul(CublasLtHandle handle, CublasLtMatmulPlan operation, void* alpha, void* a, CublasLtMatrixLayout aLayout,
                                               void* b, CublasLtMatrixLayout bLayout, void* beta, void* c, CublasLtMatrixLayout cLayout,
                                               void* d, CublasLtMatrixLayout dLayout, MatmulAlgo* algorithm,
                                               void* workspace, nuint workspaceBytes, CudaStream stream);

    /// <summary>Throws <see cref="CudaException"/> naming <paramref name="call"/> unless <paramref name="status"/> is CUBLAS_STATUS_SUCCESS.</summary>
    internal static void Check(int status, string call)
    {
        if (status == CUBLAS_STATUS_SUCCESS) return;
        var name = Marshal.PtrToStringUTF8((IntPtr)cublasLtGetStatusName(status)) ?? $"CUBLAS_STATUS_{status}";
        throw new CudaException(call, status, name, Marshal.PtrToStringUTF8((IntPtr)cublasLtGetStatusString(status)));
    }
}

/// <summary><c>cublasLtMatmulAlgo_t</c>: an opaque algorithm description of 8 64-bit words (64 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct MatmulAlgo
{
    internal fixed ulong Data[8];
}

/// <summary><c>cublasLtMatmulHeuristicResult_t</c>: 96 bytes, fields at offsets 0, 64, 72, 76 and 80.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct MatmulHeuristicResult
{
    internal MatmulAlgo Algorithm;
    internal nuint WorkspaceSize;
    internal int State;
    internal float WavesCount;
    internal fixed int Reserved[4];
}

/// <summary>The <c>cublasLtMatmulDescAttributes_t</c> values Keel sets, each with the C type the header gives it.</summary>
internal enum MatmulDescAttribute
{
    /// <summary>int32 (<c>cublasOperation_t</c>).</summary>
    TransA = 3,
    /// <summary>int32 (<c>cublasOperation_t</c>).</summary>
    TransB = 4,
    /// <summary>uint32 (<c>cublasLtEpilogue_t</c>).</summary>
    Epilogue = 7,
    /// <summary>const void*.</summary>
    BiasPointer = 8,
}

/// <summary>The <c>cublasLtMatrixLayoutAttribute_t</c> values Keel sets.</summary>
internal enum MatrixLayoutAttribute
{
    /// <summary>int32.</summary>
    BatchCount = 5,
    /// <summary>int64, in elements.</summary>
    StridedBatchOffset = 6,
}

/// <summary>The <c>cublasLtMatmulPreferenceAttributes_t</c> values Keel sets.</summary>
internal enum MatmulPreferenceAttribute
{
    /// <summary>uint64.</summary>
    MaxWorkspaceBytes = 1,
    /// <summary>uint32.</summary>
    MinAlignmentABytes = 5,
    /// <summary>uint32.</summary>
    MinAlignmentBBytes = 6,
    /// <summary>uint32.</summary>
    MinAlignmentCBytes = 7,
    /// <summary>uint32.</summary>
    MinAlignmentDBytes = 8,
}

/// <summary>The <c>cublasLtEpilogue_t</c> values behind <see cref="MatmulEpilogue"/>.</summary>
internal static class EpilogueValue
{
    internal const uint Default = 1;
    internal const uint Bias = 4;
    internal const uint Gelu = 32;
    internal const uint GeluBias = 36; // GELU | BIAS
}
