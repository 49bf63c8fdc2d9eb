namespace Keel.Cuda.CublasLt;

/// <summary>
/// A cuBLASLt matrix layout (<c>cublasLtMatrixLayout_t</c>): a host-side description of one operand, owned by the
/// <see cref="CublasLtMatmulPlan"/> that created it. Created by the marshaller (<c>out</c>), hence the public constructor
/// of an empty handle on an internal type.
/// </summary>
internal sealed class CublasLtMatrixLayout : CudaHandle
{
    /// <summary>An empty handle, for the marshaller to fill.</summary>
    public CublasLtMatrixLayout()
    {
    }

    /// <inheritdoc />
    protected override string Description => "cuBLASLt matrix layout";

    /// <inheritdoc />
    protected override bool ReleaseHandle() =>
        Released(CublasLtNative.cublasLtMatrixLayoutDestroy(handle), "cublasLtMatrixLayoutDestroy");
}

/// <summary>
/// The preferences a <see cref="CublasLtMatmulPlan"/> hands cuBLASLt's heuristic (<c>cublasLtMatmulPreference_t</c>),
/// host-side and short-lived. Created by the marshaller (<c>out</c>).
/// </summary>
internal sealed class CublasLtMatmulPreference : CudaHandle
{
    /// <summary>An empty handle, for the marshaller to fill.</summary>
    public CublasLtMatmulPreference()
    {
    }

    /// <inheritdoc />
    protected override string Description => "cuBLASLt matmul preference";

    /// <inheritdoc />
    protected override bool ReleaseHandle() =>
        Released(CublasLtNative.cublasLtMatmulPreferenceDestroy(handle), "cublasLtMatmulPreferenceDestroy");
}
