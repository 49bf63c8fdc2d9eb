using Keel.Cuda.Cublas;
using Keel.Cuda.Driver;

namespace Keel.Cuda.CublasLt;

/// <summary>
/// One cuBLASLt matmul of a fixed shape, prepared once: descriptors built and the algorithm chosen by cuBLASLt's
/// heuristic at creation, so that <see cref="Execute"/> only sets the bias pointer (when there is one) and queues the
/// product, allocating nothing. Column-major, as in cuBLAS (see <see cref="CublasLtMatmulOptions"/>). Not safe to
/// execute from two threads at once (the bias pointer lives in the shared descriptor). Destroyed on
/// <see cref="IDisposable.Dispose"/>; keeps its <see cref="CublasLtHandle"/> alive until then.
/// </summary>
/// <remarks>
/// The algorithm is chosen for operands aligned to <see cref="RequiredAlignment"/> bytes, and <see cref="Execute"/>
/// refuses addresses that are not, so that a plan never runs a kernel that assumes more alignment than it gets.
/// </remarks>
public sealed unsafe class CublasLtMatmulPlan : CudaHandle
{
    /// <summary>The alignment, in bytes, every operand address (A, B, D and the bias) must have.</summary>
    public const int RequiredAlignment = 16;

    private readonly CublasLtHandle _lt;
    private IntPtr _aLayout, _bLayout, _dLayout;
    private MatmulAlgo _algorithm;

    private CublasLtMatmulPlan(CublasLtHandle lt, CublasLtMatmulOptions options)
    {
        _lt = lt;
        Options = options;
    }

    /// <summary>The shape, types and epilogue this plan runs.</summary>
    public CublasLtMatmulOptions Options { get; }

    /// <summary>The workspace the chosen algorithm needs, in bytes (at most the limit given at creation).</summary>
    public long WorkspaceBytes { get; private set; }

    /// <inheritdoc />
    protected override string Description => $"cuBLASLt matmul plan {Options}";

    /// <summary>
    /// Builds the plan and runs cuBLASLt's heuristic once for the best algorithm that needs at most
    /// <paramref name="maxWorkspaceBytes"/> of workspace.
    /// </summary>
    /// <exception cref="ArgumentException">An option is invalid (named as <c>options.Field</c>) or the workspace limit is negative.</exception>
    /// <exception cref="InvalidOperationException">cuBLASLt has no algorithm for this shape, these types and this workspace.</exception>
    public static CublasLtMatmulPlan Create(CublasLtHandle handle, CublasLtMatmulOptions options, long maxWorkspaceBytes)
    {
        ArgumentNullException.ThrowIfNull(handle);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        ArgumentOutOfRangeException.ThrowIfNegative(maxWorkspaceBytes);

        var plan = new CublasLtMatmulPlan(handle, options);
        var holdsHandle = false;
        handle.DangerousAddRef(ref holdsHandle);
        try
        {
            CublasLtNative.Check(CublasLtNative.cublasLtMatmulDescCreate(out var desc, CublasComputeType.Compute32F, CudaDataType.R32F),
                                 "cublasLtMatmulDescCreate");
            plan.SetHandle(desc);
        }
        catch
        {
            handle.DangerousRelease();
            plan.SetHandleAsInvalid();
            throw;
        }

        try
        {
            plan.Prepare(maxWorkspaceBytes);
            return plan;
        }
        catch
        {
            plan.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Queues <c>D = epilogue(alpha * op(A) op(B) + beta * D)</c> on <paramref name="stream"/>. Addresses are device
    /// addresses of the first matrix of each operand; <paramref name="bias"/> is required exactly when the epilogue
    /// adds one (m elements of the output type). The context must be current on the calling thread.
    /// </summary>
    /// <exception cref="ArgumentException">An address is null or misaligned, the bias does not match the epilogue, or the workspace is too small.</exception>
    public void Execute(ulong a, ulong b, ulong d, ulong bias, DeviceMemory? workspace, CudaStream stream, float alpha = 1f, float beta = 0f)
    {
        CheckOperand(a, nameof(a));
        CheckOperand(b, nameof(b));
        CheckOperand(d, nameof(d));
        if (Options.HasBias) CheckOperand(bias, nameof(bias));
        else if (bias != 0) throw new ArgumentException($"the epilogue {Options.Epilogue} takes no bias; pass 0.", nameof(bias));
        var workspaceBytes = workspace?.ByteLength ?? 0;
        if (workspaceBytes < WorkspaceBytes)
            throw new ArgumentException($"the plan needs {WorkspaceBytes} bytes of workspace; {workspaceBytes} were given.", nameof(workspace));
        ArgumentNullException.ThrowIfNull(stream);
        ObjectDisposedException.ThrowIf(IsClosed, this);

        if (Options.HasBias)
        {
            var biasPointer = (void*)bias;
            CublasLtNative.Check(CublasLtNative.cublasLtMatmulDescSetAttribute(handle, MatmulDescAttribute.BiasPointer, &biasPointer,
                                                                               (nuint)sizeof(void*)), "cublasLtMatmulDescSetAttribute");
        }
        var workspaceAddress = workspace is null ? null : (void*)workspace.Address;
        fixed (MatmulAlgo* algorithm = &_algorithm)
        {
            // C is D (same layout): beta accumulates into the output in place.
            CublasLtNative.Check(CublasLtNative.cublasLtMatmul(_lt.Handle, handle, &alpha, (void*)a, _aLayout, (void*)b, _bLayout,
                                                               &beta, (void*)d, _dLayout, (void*)d, _dLayout, algorithm,
                                                               workspaceAddress, (nuint)workspaceBytes, stream.Handle), "cublasLtMatmul");
        }
    }

    /// <summary>Sets the descriptors up and asks the heuristic for one algorithm.</summary>
    private void Prepare(long maxWorkspaceBytes)
    {
        var o = Options;
        SetDescAttribute(MatmulDescAttribute.TransA, (int)o.TransA);
        SetDescAttribute(MatmulDescAttribute.TransB, (int)o.TransB);
        SetDescAttribute(MatmulDescAttribute.Epilogue, o.Epilogue switch
        {
            MatmulEpilogue.None => EpilogueValue.Default,
            MatmulEpilogue.Bias => EpilogueValue.Bias,
            MatmulEpilogue.Gelu => EpilogueValue.Gelu,
            _ => EpilogueValue.GeluBias,
        });
        if (o.HasBias)
        {
            // The heuristic does not read the bias but infers its alignment from the pointer value; a placeholder
            // aligned to exactly RequiredAlignment keeps it from picking kernels that assume more. Execute sets the real one.
            var placeholder = (void*)RequiredAlignment;
            CublasLtNative.Check(CublasLtNative.cublasLtMatmulDescSetAttribute(handle, MatmulDescAttribute.BiasPointer, &placeholder,
                                                                               (nuint)sizeof(void*)), "cublasLtMatmulDescSetAttribute");
        }

        _aLayout = CreateLayout(o.InputType, o.RowsOfA, o.ColsOfA, o.LeadingA, o.BatchCount, o.BatchStrideA);
        _bLayout = CreateLayout(o.InputType, o.RowsOfB, o.ColsOfB, o.LeadingB, o.BatchCount, o.BatchStrideB);
        _dLayout = CreateLayout(o.OutputType, o.M, o.N, o.LeadingD, o.BatchCount, o.BatchStrideD);

        CublasLtNative.Check(CublasLtNative.cublasLtMatmulPreferenceCreate(out var preference), "cublasLtMatmulPreferenceCreate");
        try
        {
            var maxWorkspace = (ulong)maxWorkspaceBytes;
            CublasLtNative.Check(CublasLtNative.cublasLtMatmulPreferenceSetAttribute(preference, MatmulPreferenceAttribute.MaxWorkspaceBytes,
                                                                                     &maxWorkspace, sizeof(ulong)), "cublasLtMatmulPreferenceSetAttribute");
            var alignment = (uint)RequiredAlignment;
            foreach (var attribute in (ReadOnlySpan<MatmulPreferenceAttribute>)[MatmulPreferenceAttribute.MinAlignmentABytes, MatmulPreferenceAttribute.MinAlignmentBBytes,
                                                                                 MatmulPreferenceAttribute.MinAlignmentCBytes, MatmulPreferenceAttribute.MinAlignmentDBytes])
                CublasLtNative.Check(CublasLtNative.cublasLtMatmulPreferenceSetAttribute(preference, attribute, &alignment, sizeof(uint)),
                                     "cublasLtMatmulPreferenceSetAttribute");

            var result = default(MatmulHeuristicResult);
            var status = CublasLtNative.cublasLtMatmulAlgoGetHeuristic(_lt.Handle, handle, _aLayout, _bLayout, _dLayout, _dLayout, preference,
                                                                         1, &result, out var returned);
            if (status == CublasLtNative.CUBLAS_STATUS_NOT_SUPPORTED || (status == CublasLtNative.CUBLAS_STATUS_SUCCESS && (returned == 0 || result.State != 0)))
                throw new InvalidOperationException(
                    $"cuBLASLt has no algorithm for {o} within {maxWorkspaceBytes} bytes of workspace.");
            CublasLtNative.Check(status, "cublasLtMatmulAlgoGetHeuristic");
            _algorithm = result.Algorithm;
            WorkspaceBytes = (long)result.WorkspaceSize;
        }
        finally
        {
            CublasLtNative.cublasLtMatmulPreferenceDestroy(preference);
        }
    }

    private void SetDescAttribute(MatmulDescAttribute attribute, int value) =>
        CublasLtNative.Check(CublasLtNative.cublasLtMatmulDescSetAttribute(handle, attribute, &value, sizeof(int)), "cublasLtMatmulDescSetAttribute");

    private void SetDescAttribute(MatmulDescAttribute attribute, uint value) =>
        CublasLtNative.Check(CublasLtNative.cublasLtMatmulDescSetAttribute(handle, attribute, &value, sizeof(uint)), "cublasLtMatmulDescSetAttribute");

    private static IntPtr CreateLayout(CudaDataType type, int rows, int cols, int ld, int batchCount, long batchStride)
    {
        CublasLtNative.Check(CublasLtNative.cublasLtMatrixLayoutCreate(out var layout, type, (ulong)rows, (ulong)cols, ld), "cublasLtMatrixLayoutCreate");
        if (batchCount == 1) return layout;
        try
        {
            CublasLtNative.Check(CublasLtNative.cublasLtMatrixLayoutSetAttribute(layout, MatrixLayoutAttribute.BatchCount, &batchCount, sizeof(int)),
                                 "cublasLtMatrixLayoutSetAttribute");
            CublasLtNative.Check(CublasLtNative.cublasLtMatrixLayoutSetAttribute(layout, MatrixLayoutAttribute.StridedBatchOffset, &batchStride, sizeof(long)),
                                 "cublasLtMatrixLayoutSetAttribute");
            return layout;
        }
        catch
        {
            CublasLtNative.cublasLtMatrixLayoutDestroy(layout);
            throw;
        }
    }

    private static void CheckOperand(ulong address, string name)
    {
        if (address == 0) throw new ArgumentException("the address is null.", name);
        if (address % RequiredAlignment != 0)
            throw new ArgumentException($"the address 0x{address:x} is not aligned to {RequiredAlignment} bytes.", name);
    }

    /// <inheritdoc />
    protected override bool ReleaseHandle()
    {
        var destroyed = true;
        foreach (var layout in (ReadOnlySpan<IntPtr>)[_aLayout, _bLayout, _dLayout])
            if (layout != IntPtr.Zero)
                destroyed &= CublasLtNative.cublasLtMatrixLayoutDestroy(layout) == CublasLtNative.CUBLAS_STATUS_SUCCESS;
        destroyed &= CublasLtNative.cublasLtMatmulDescDestroy(handle) == CublasLtNative.CUBLAS_STATUS_SUCCESS;
        _lt.DangerousRelease();
        return destroyed;
    }
}
