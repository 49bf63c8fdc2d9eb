using Keel.Cuda.Cublas;
using Keel.Cuda.Driver;

namespace Keel.Cuda.CublasLt;

/// <summary>
/// One cuBLASLt matmul of a fixed shape, prepared once: descriptors built and the algorithm chosen by cuBLASLt's
/// heuristic at creation, so that <see cref="Execute"/> only sets the bias pointer (when there is one) and queues the
/// product, allocating nothing. Column-major, as in cuBLAS (see <see cref="CublasLtMatmulOptions"/>). Not safe to
/// execute from two threads at once (the bias pointer lives in the shared descriptor). Destroyed on
/// <see cref="IDisposable.Dispose"/>; holds its <see cref="CublasLtHandle"/> until then, so the two may be disposed in
/// either order, but an <see cref="Execute"/> after the handle was disposed is refused.
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
    private CublasLtMatrixLayout? _aLayout, _bLayout, _dLayout;
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
        try
        {
            handle.DangerousAddRef(ref holdsHandle);
            CublasLtNative.Check(CublasLtNative.cublasLtMatmulDescCreate(out var desc, CublasComputeType.Compute32F, CudaDataType.R32F),
                                 "cublasLtMatmulDescCreate");
            plan.SetHandle(desc);
        }
        catch
        {
            if (holdsHandle) handle.DangerousRelease();
            plan.Dispose();
            throw;
        }

        // From here on the plan owns the descriptor and the claim on the handle: disposing it releases both.
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

        if (Options.HasBias) SetDescAttribute(MatmulDescAttribute.BiasPointer, (nint)bias);
        using var heldWorkspace = new HandleLease(workspace);
        fixed (MatmulAlgo* algorithm = &_algorithm)
        {
            // C is D (same layout): beta accumulates into the output in place.
            CublasLtNative.Check(CublasLtNative.cublasLtMatmul(_lt, this, &alpha, (void*)a, _aLayout!, (void*)b, _bLayout!,
                                                               &beta, (void*)d, _dLayout!, (void*)d, _dLayout!, algorithm,
                                                               (void*)heldWorkspace.Value, (nuint)workspaceBytes, stream), "cublasLtMatmul");
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
            SetDescAttribute(MatmulDescAttribute.BiasPointer, (nint)RequiredAlignment);
        }

        _aLayout = CreateLayout(o.InputType, o.RowsOfA, o.ColsOfA, o.LeadingA, o.BatchCount, o.BatchStrideA);
        _bLayout = CreateLayout(o.InputType, o.RowsOfB, o.ColsOfB, o.LeadingB, o.BatchCount, o.BatchStrideB);
        _dLayout = CreateLayout(o.OutputType, o.M, o.N, o.LeadingD, o.BatchCount, o.BatchStrideD);

        var created = CublasLtNative.cublasLtMatmulPreferenceCreate(out var preference);
        CublasLtNative.Check(preference.DiscardUnlessCreated(created), "cublasLtMatmulPreferenceCreate");
        using (preference)
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
            var status = CublasLtNative.cublasLtMatmulAlgoGetHeuristic(_lt, this, _aLayout, _bLayout, _dLayout, _dLayout, preference,
                                                                         1, &result, out var returned);
            if (status == CublasLtNative.CUBLAS_STATUS_NOT_SUPPORTED || (status == CublasLtNative.CUBLAS_STATUS_SUCCESS && (returned == 0 || result.State != 0)))
                throw new InvalidOperationException(
                    $"cuBLASLt has no algorithm for {o} within {maxWorkspaceBytes} bytes of workspace.");
            CublasLtNative.Check(status, "cublasLtMatmulAlgoGetHeuristic");
            _algorithm = result.Algorithm;
            WorkspaceBytes = (long)result.WorkspaceSize;
        }
    }

    private void SetDescAttribute<T>(MatmulDescAttribute attribute, T value) where T : unmanaged =>
        CublasLtNative.Check(CublasLtNative.cublasLtMatmulDescSetAttribute(this, attribute, &value, (nuint)sizeof(T)), "cublasLtMatmulDescSetAttribute");

    private static CublasLtMatrixLayout CreateLayout(CudaDataType type, int rows, int cols, int ld, int batchCount, long batchStride)
    {
        var created = CublasLtNative.cublasLtMatrixLayoutCreate(out var layout, type, (ulong)rows, (ulong)cols, ld);
        CublasLtNative.Check(layout.DiscardUnlessCreated(created), "cublasLtMatrixLayoutCreate");
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
            layout.Dispose();
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
        _aLayout?.Dispose();
        _bLayout?.Dispose();
        _dLayout?.Dispose();
        var destroyed = Released(CublasLtNative.cublasLtMatmulDescDestroy(handle), "cublasLtMatmulDescDestroy");
        _lt.DangerousRelease();
        return destroyed;
    }
}
