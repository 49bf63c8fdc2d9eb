using Keel.Cuda.Driver;
using Keel.Cuda.Interop;

namespace Keel.Cuda.CublasLt;

/// <summary>A cuBLASLt handle (<c>cublasLtCreate</c>), destroyed on <see cref="IDisposable.Dispose"/>; plans are built on it.</summary>
public sealed class CublasLtHandle : CudaHandle
{
    private readonly CudaContext _context;

    private CublasLtHandle(CudaContext context) => _context = context;

    /// <summary>The context the handle was created in.</summary>
    public CudaContext Context => _context;

    /// <inheritdoc />
    protected override string Description => "cuBLASLt handle";

    /// <summary>
    /// cuBLASLt's version number as <c>cublasLtGetVersion</c> returns it, in cuBLAS's encoding
    /// <c>major * 10000 + minor * 100 + patch</c> (for example 120405 for 12.4.5).
    /// </summary>
    /// <exception cref="CudaLibraryNotFoundException">cuBLASLt is not installed where Keel looks.</exception>
    public static long VersionNumber
    {
        get
        {
            CudaLibraries.Require(CudaLibrary.CublasLt);
            return (long)CublasLtNative.cublasLtGetVersion();
        }
    }

    /// <summary>Creates a handle in <paramref name="context"/>.</summary>
    /// <exception cref="CudaLibraryNotFoundException">cuBLASLt is not installed where Keel looks.</exception>
    public static CublasLtHandle Create(CudaContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        CudaLibraries.Require(CudaLibrary.CublasLt);
        context.AddDependent();
        try
        {
            context.Bind();
            CublasLtNative.Check(CublasLtNative.cublasLtCreate(out var lt), "cublasLtCreate");
            var result = new CublasLtHandle(context);
            result.SetHandle(lt);
            return result;
        }
        catch
        {
            context.RemoveDependent();
            throw;
        }
    }

    /// <summary>
    /// The raw <c>cublasLtHandle_t</c>, for plans: each holds a reference (<c>DangerousAddRef</c>), which keeps it
    /// valid even after this object was disposed.
    /// </summary>
    internal IntPtr Handle => handle;

    /// <inheritdoc />
    protected override bool ReleaseHandle()
    {
        var destroyed = CudaDriverNative.cuCtxSetCurrent(_context.Handle) == CudaDriverNative.CUDA_SUCCESS
                        && CublasLtNative.cublasLtDestroy(handle) == CublasLtNative.CUBLAS_STATUS_SUCCESS;
        _context.RemoveDependent();
        return destroyed;
    }
}
