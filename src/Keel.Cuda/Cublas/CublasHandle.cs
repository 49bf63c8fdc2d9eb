using Keel.Cuda.Driver;
using Keel.Cuda.Interop;

namespace Keel.Cuda.Cublas;

/// <summary>
/// A cuBLAS handle bound to one stream and one workspace (<c>cublasCreate</c>), destroyed on
/// <see cref="IDisposable.Dispose"/>. Every GEMM is queued on that stream and uses that workspace only, so the
/// handle allocates nothing per call and its calls can be captured into a <see cref="CudaGraph"/>.
/// </summary>
/// <remarks>
/// <para>
/// This layer keeps cuBLAS's own convention: matrices are <b>column-major</b>. A GEMM computes
/// <c>C = alpha * op(A) * op(B) + beta * C</c> with op(A) m x k, op(B) k x n and C m x n, where a matrix with
/// leading dimension <c>ld</c> stores element (row i, column j) at <c>i + j * ld</c>. A row-major matrix is the
/// column-major storage of its transpose; the mapping of row-major products onto this is the caller's.
/// </para>
/// <para>
/// Matrix arguments are device addresses (<see cref="DeviceMemory.Address"/> plus a byte offset). The stream's
/// context must be current on the calling thread. The handle keeps its stream and workspace alive until it is disposed.
/// </para>
/// </remarks>
public sealed unsafe class CublasHandle : ContextBoundHandle
{
    private CublasHandle(CudaStream stream, DeviceMemory workspace) : base(stream.Context)
    {
        Stream = stream;
        Workspace = workspace;
    }

    /// <summary>The stream every call is queued on.</summary>
    public CudaStream Stream { get; }

    /// <summary>The device memory cuBLAS may use as scratch space (cuBLAS suggests 32 MiB on Hopper, 4 MiB before).</summary>
    public DeviceMemory Workspace { get; }

    /// <inheritdoc />
    protected override string Description => "cuBLAS handle";

    /// <summary>cuBLAS's version, for example 12.4.5.</summary>
    /// <exception cref="CudaLibraryNotFoundException">cuBLAS is not installed where Keel looks.</exception>
    public static Version LibraryVersion
    {
        get
        {
            CudaLibraries.Require(CudaLibrary.Cublas);
            CublasNative.Check(CublasNative.cublasGetProperty(LibraryProperty.MajorVersion, out var major), "cublasGetProperty");
            CublasNative.Check(CublasNative.cublasGetProperty(LibraryProperty.MinorVersion, out var minor), "cublasGetProperty");
            CublasNative.Check(CublasNative.cublasGetProperty(LibraryProperty.PatchLevel, out var patch), "cublasGetProperty");
            return new Version(major, minor, patch);
        }
    }

    /// <summary>Creates a handle whose calls run on <paramref name="stream"/> with <paramref name="workspace"/> as scratch memory.</summary>
    /// <exception cref="ArgumentException">The workspace belongs to another context than the stream.</exception>
    /// <exception cref="CudaLibraryNotFoundException">cuBLAS is not installed where Keel looks.</exception>
    public static CublasHandle Create(CudaStream stream, DeviceMemory workspace)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(workspace);
        if (workspace.Context.ClaimedHandle != stream.Context.ClaimedHandle)
            throw new ArgumentException("the workspace and the stream belong to different contexts.", nameof(workspace));
        CudaLibraries.Require(CudaLibrary.Cublas);

        stream.Context.MakeCurrent();
        var result = new CublasHandle(stream, workspace);
        // The handle keeps its stream and workspace until it is released: claims taken before it owns anything, so
        // that its release, which drops them, never runs without them.
        var holdsStream = false;
        var holdsWorkspace = false;
        try
        {
            stream.DangerousAddRef(ref holdsStream);
            workspace.DangerousAddRef(ref holdsWorkspace);
        }
        catch
        {
            if (holdsStream) stream.DangerousRelease();
            result.Dispose();
            throw;
        }
        try
        {
            result.Create(0, static (_, out handle) => CublasNative.Check(CublasNative.cublasCreate_v2(out handle), "cublasCreate"));
        }
        catch
        {
            workspace.DangerousRelease();
            stream.DangerousRelease();
            throw;
        }
        try
        {
            // cublasSetStream resets the workspace to cuBLAS's own pool, so the workspace is set after it.
            CublasNative.Check(CublasNative.cublasSetStream_v2(result, stream), "cublasSetStream");
            CublasNative.Check(CublasNative.cublasSetWorkspace_v2(result, workspace, (nuint)workspace.ByteLength), "cublasSetWorkspace");
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    /// <summary>Sets the math mode for later calls (<c>cublasSetMathMode</c>).</summary>
    public void SetMathMode(CublasMathMode mode) =>
        CublasNative.Check(CublasNative.cublasSetMathMode(this, mode), "cublasSetMathMode");

    /// <summary>
    /// bf16 GEMM with fp32 accumulation and fp32 alpha/beta: <c>C = alpha * op(A) * op(B) + beta * C</c>, column-major,
    /// A and B bf16, C bf16 or fp32 as <paramref name="outputType"/> says (<c>cublasGemmEx</c>, CUBLAS_COMPUTE_32F).
    /// </summary>
    /// <exception cref="ArgumentException">A size, leading dimension, address or output type is invalid.</exception>
    public void GemmBf16(CublasOperation transA, CublasOperation transB, int m, int n, int k, float alpha,
                         ulong a, int lda, ulong b, int ldb, float beta, ulong c, int ldc, CudaDataType outputType)
    {
        ValidateGemm(transA, transB, m, n, k, lda, ldb, ldc);
        ValidateAddresses(a, b, c);
        ValidateBf16Output(outputType);
        CublasNative.Check(CublasNative.cublasGemmEx(this, transA, transB, m, n, k, &alpha,
                               (void*)a, CudaDataType.R16BF, lda, (void*)b, CudaDataType.R16BF, ldb,
                               &beta, (void*)c, outputType, ldc, CublasComputeType.Compute32F, CublasGemmAlgorithm.Default), "cublasGemmEx");
    }

    /// <summary>
    /// <see cref="GemmBf16"/> over <paramref name="batchCount"/> independent problems whose matrices lie
    /// <paramref name="strideA"/>, <paramref name="strideB"/> and <paramref name="strideC"/> elements apart
    /// (<c>cublasGemmStridedBatchedEx</c>). A stride of 0 reuses one matrix for every problem.
    /// </summary>
    /// <exception cref="ArgumentException">A size, leading dimension, stride, address or output type is invalid.</exception>
    public void GemmBf16StridedBatched(CublasOperation transA, CublasOperation transB, int m, int n, int k, float alpha,
                                       ulong a, int lda, long strideA, ulong b, int ldb, long strideB, float beta,
                                       ulong c, int ldc, long strideC, int batchCount, CudaDataType outputType)
    {
        ValidateGemm(transA, transB, m, n, k, lda, ldb, ldc);
        ValidateBatch(strideA, strideB, strideC, batchCount);
        ValidateAddresses(a, b, c);
        ValidateBf16Output(outputType);
        CublasNative.Check(CublasNative.cublasGemmStridedBatchedEx(this, transA, transB, m, n, k, &alpha,
                               (void*)a, CudaDataType.R16BF, lda, strideA, (void*)b, CudaDataType.R16BF, ldb, strideB,
                               &beta, (void*)c, outputType, ldc, strideC, batchCount,
                               CublasComputeType.Compute32F, CublasGemmAlgorithm.Default), "cublasGemmStridedBatchedEx");
    }

    /// <summary>
    /// fp32 GEMM, <c>C = alpha * op(A) * op(B) + beta * C</c>, column-major (<c>cublasSgemm</c>). Under the default math
    /// mode it computes in fp32 without TF32 rounding.
    /// </summary>
    /// <exception cref="ArgumentException">A size, leading dimension or address is invalid.</exception>
    public void GemmFp32(CublasOperation transA, CublasOperation transB, int m, int n, int k, float alpha,
                         ulong a, int lda, ulong b, int ldb, float beta, ulong c, int ldc)
    {
        ValidateGemm(transA, transB, m, n, k, lda, ldb, ldc);
        ValidateAddresses(a, b, c);
        CublasNative.Check(CublasNative.cublasSgemm_v2(this, transA, transB, m, n, k, &alpha,
                               (float*)a, lda, (float*)b, ldb, &beta, (float*)c, ldc), "cublasSgemm");
    }

    /// <summary>
    /// Checks a column-major GEMM's sizes and leading dimensions: m, n, k positive; lda at least the stored rows of A
    /// (m if A is used as stored, k if transposed); ldb at least the stored rows of B (k or n); ldc at least m.
    /// </summary>
    internal static void ValidateGemm(CublasOperation transA, CublasOperation transB, int m, int n, int k, int lda, int ldb, int ldc)
    {
        if (!Enum.IsDefined(transA)) throw new ArgumentOutOfRangeException(nameof(transA), transA, null);
        if (!Enum.IsDefined(transB)) throw new ArgumentOutOfRangeException(nameof(transB), transB, null);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(m);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(n);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(k);
        var aRows = transA == CublasOperation.None ? m : k;
        if (lda < aRows)
            throw new ArgumentOutOfRangeException(nameof(lda), lda, $"A is stored with {aRows} rows, so lda must be at least {aRows}.");
        var bRows = transB == CublasOperation.None ? k : n;
        if (ldb < bRows)
            throw new ArgumentOutOfRangeException(nameof(ldb), ldb, $"B is stored with {bRows} rows, so ldb must be at least {bRows}.");
        if (ldc < m)
            throw new ArgumentOutOfRangeException(nameof(ldc), ldc, $"C has {m} rows, so ldc must be at least {m}.");
    }

    /// <summary>Checks the batch count and strides of a strided-batched GEMM.</summary>
    internal static void ValidateBatch(long strideA, long strideB, long strideC, int batchCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(strideA);
        ArgumentOutOfRangeException.ThrowIfNegative(strideB);
        ArgumentOutOfRangeException.ThrowIfNegative(strideC);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchCount);
    }

    private static void ValidateAddresses(ulong a, ulong b, ulong c)
    {
        if (a == 0) throw new ArgumentException("the address of A is null.", nameof(a));
        if (b == 0) throw new ArgumentException("the address of B is null.", nameof(b));
        if (c == 0) throw new ArgumentException("the address of C is null.", nameof(c));
    }

    private static void ValidateBf16Output(CudaDataType outputType)
    {
        if (outputType is not (CudaDataType.R16BF or CudaDataType.R32F))
            throw new ArgumentOutOfRangeException(nameof(outputType), outputType, "a bf16 GEMM writes bf16 or fp32.");
    }

    private protected override bool Destroy(IntPtr handle) => Released(CublasNative.cublasDestroy_v2(handle), "cublasDestroy");

    private protected override void DropHeld()
    {
        Workspace.DangerousRelease();
        Stream.DangerousRelease();
    }
}
