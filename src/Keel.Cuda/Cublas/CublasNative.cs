using System.Runtime.InteropServices;
using Keel.Cuda.Driver;
using Keel.Cuda.Interop;

namespace Keel.Cuda.Cublas;

/// <summary>
/// Raw cuBLAS entry points (cublas_api.h). The <c>_v2</c> names are the exported symbols that cublas_v2.h maps the
/// plain names onto; every signature here is the same in CUDA 11.8 and 12.6. All calls return a <c>cublasStatus_t</c>.
/// Handles are passed as their <see cref="CudaHandle"/> types, except in the creating and destroying calls (see
/// <c>CudaDriverNative</c>); matrices are device addresses.
/// </summary>
internal static unsafe partial class CublasNative
{
    private const string Lib = CudaLibraries.CublasName;

    internal const int CUBLAS_STATUS_SUCCESS = 0;

    [LibraryImport(Lib)] internal static partial int cublasCreate_v2(out IntPtr handle);
    [LibraryImport(Lib)] internal static partial int cublasDestroy_v2(IntPtr handle);
    [LibraryImport(Lib)] internal static partial int cublasSetStream_v2(CublasHandle handle, CudaStream stream);
    [LibraryImport(Lib)] internal static partial int cublasSetWorkspace_v2(CublasHandle handle, DeviceMemory workspace, nuint workspaceBytes);
    [LibraryImport(Lib)] internal static partial int cublasSetMathMode(CublasHandle handle, CublasMathMode mode);
    [LibraryImport(Lib)] internal static partial int cublasGetProperty(LibraryProperty type, out int value);
    [LibraryImport(Lib)] internal static partial byte* cublasGetStatusName(int status);
    [LibraryImport(Lib)] internal static partial byte* cublasGetStatusString(int status);

    [LibraryImport(Lib)]
    internal static partial int cublasGemmEx(CublasHandle handle, CublasOperation transA, CublasOperation transB, int m, int n, int k,
                                             void* alpha, void* a, CudaDataType aType, int lda, void* b, CudaDataType bType, int ldb,
                                             void* beta, void* c, CudaDataType cType, int ldc,
                                             CublasComputeType computeType, CublasGemmAlgorithm algorithm);

    [LibraryImport(Lib)]
    internal static partial int cublasGemmStridedBatchedEx(CublasHandle handle, CublasOperation transA, CublasOperation transB, int m, int n, int k,
                                                           void* alpha, void* a, CudaDataType aType, int lda, long strideA,
                                                           void* b, CudaDataType bType, int ldb, long strideB,
                                                           void* beta, void* c, CudaDataType cType, int ldc, long strideC,
                                                           int batchCount, CublasComputeType computeType, CublasGemmAlgorithm algorithm);

    [LibraryImport(Lib)]
    internal static partial int cublasSgemm_v2(CublasHandle handle, CublasOperation transA, CublasOperation transB, int m, int n, int k,
                                               float* alpha, float* a, int lda, float* b, int ldb, float* beta, float* c, int ldc);

    /// <summary>Throws <see cref="CudaException"/> naming <paramref name="call"/> unless <paramref name="status"/> is CUBLAS_STATUS_SUCCESS.</summary>
    internal static void Check(int status, string call)
    {
        if (status == CUBLAS_STATUS_SUCCESS) return;
        var name = Marshal.PtrToStringUTF8((IntPtr)cublasGetStatusName(status)) ?? $"CUBLAS_STATUS_{status}";
        throw new CudaException(call, status, name, Marshal.PtrToStringUTF8((IntPtr)cublasGetStatusString(status)));
    }
}

/// <summary>Which part of a library version to read (<c>libraryPropertyType</c>, library_types.h).</summary>
internal enum LibraryProperty
{
    MajorVersion = 0,
    MinorVersion = 1,
    PatchLevel = 2,
}
