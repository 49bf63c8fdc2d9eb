using Keel.Cuda.Driver;
using Keel.Cuda.Interop;

namespace Keel.Cuda.CublasLt;

/// <summary>A cuBLASLt handle (<c>cublasLtCreate</c>), destroyed on <see cref="IDisposable.Dispose"/>; plans are built on it.</summary>
public sealed class CublasLtHandle : ContextBoundHandle
{
    private CublasLtHandle(CudaContext context) : base(context)
    {
    }

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
        context.MakeCurrent();
        var lt = new CublasLtHandle(context);
        lt.Create(0, static (_, out handle) => CublasLtNative.Check(CublasLtNative.cublasLtCreate(out handle), "cublasLtCreate"));
        return lt;
    }

    private protected override bool Destroy(IntPtr handle) => Released(CublasLtNative.cublasLtDestroy(handle), "cublasLtDestroy");
}
