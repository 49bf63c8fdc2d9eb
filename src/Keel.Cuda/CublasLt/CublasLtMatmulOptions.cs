using Keel.Cuda.Cublas;

namespace Keel.Cuda.CublasLt;

/// <summary>What a <see cref="CublasLtMatmulPlan"/> applies after the product (<c>cublasLtEpilogue_t</c>).</summary>
public enum MatmulEpilogue
{
    /// <summary><c>D = alpha * op(A) op(B) + beta * D</c>.</summary>
    None,
    /// <summary>Adds a bias vector of length m (one value per row of D) before storing.</summary>
    Bias,
    /// <summary>Applies cuBLASLt's GELU to every element before storing.</summary>
    Gelu,
    /// <summary>Adds the bias, then applies GELU.</summary>
    GeluBias,
}

/// <summary>
/// The fixed shape of one cuBLASLt matmul, column-major as in cuBLAS: <c>D = epilogue(alpha * op(A) op(B) + beta * D)</c>
/// with op(A) m x k, op(B) k x n and D m x n. Computation and alpha/beta are fp32.
/// </summary>
/// <param name="M">Rows of op(A) and of D.</param>
/// <param name="N">Columns of op(B) and of D.</param>
/// <param name="K">Columns of op(A), rows of op(B).</param>
public sealed record CublasLtMatmulOptions(int M, int N, int K)
{
    /// <summary>Whether A is used as stored or transposed.</summary>
    public CublasOperation TransA { get; init; } = CublasOperation.None;

    /// <summary>Whether B is used as stored or transposed.</summary>
    public CublasOperation TransB { get; init; } = CublasOperation.None;

    /// <summary>Element type of A and B: bf16 (default), fp16 or fp32.</summary>
    public CudaDataType InputType { get; init; } = CudaDataType.R16BF;

    /// <summary>Element type of D, and of the bias: bf16 (default), fp16 or fp32; fp32 inputs need an fp32 output.</summary>
    public CudaDataType OutputType { get; init; } = CudaDataType.R16BF;

    /// <summary>What is applied after the product.</summary>
    public MatmulEpilogue Epilogue { get; init; } = MatmulEpilogue.None;

    /// <summary>Leading dimension of A; null for the stored row count (m as stored, k transposed).</summary>
    public int? Lda { get; init; }

    /// <summary>Leading dimension of B; null for the stored row count (k as stored, n transposed).</summary>
    public int? Ldb { get; init; }

    /// <summary>Leading dimension of D; null for m.</summary>
    public int? Ldd { get; init; }

    /// <summary>Number of independent products run by one call; matrices of one batch follow each other by the strides.</summary>
    public int BatchCount { get; init; } = 1;

    /// <summary>Elements from one A to the next in a batch; null for a tightly packed A. 0 reuses one A.</summary>
    public long? StrideA { get; init; }

    /// <summary>Elements from one B to the next in a batch; null for a tightly packed B. 0 reuses one B.</summary>
    public long? StrideB { get; init; }

    /// <summary>Elements from one D to the next in a batch; null for a tightly packed D.</summary>
    public long? StrideD { get; init; }

    /// <summary>True when the epilogue reads a bias vector.</summary>
    public bool HasBias => Epilogue is MatmulEpilogue.Bias or MatmulEpilogue.GeluBias;

    internal int RowsOfA => TransA == CublasOperation.None ? M : K;
    internal int ColsOfA => TransA == CublasOperation.None ? K : M;
    internal int RowsOfB => TransB == CublasOperation.None ? K : N;
    internal int ColsOfB => TransB == CublasOperation.None ? N : K;
    internal int LeadingA => Lda ?? RowsOfA;
    internal int LeadingB => Ldb ?? RowsOfB;
    internal int LeadingD => Ldd ?? M;
    internal long BatchStrideA => StrideA ?? (long)LeadingA * ColsOfA;
    internal long BatchStrideB => StrideB ?? (long)LeadingB * ColsOfB;
    internal long BatchStrideD => StrideD ?? (long)LeadingD * N;

    /// <summary>Checks every field, naming the offending one as <c>options.Field</c>; runs before any library call.</summary>
    internal void Validate()
    {
        const string prefix = "options.";
        if (M <= 0) throw new ArgumentOutOfRangeException(prefix + nameof(M), M, "must be positive.");
        if (N <= 0) throw new ArgumentOutOfRangeException(prefix + nameof(N), N, "must be positive.");
        if (K <= 0) throw new ArgumentOutOfRangeException(prefix + nameof(K), K, "must be positive.");
        if (!Enum.IsDefined(TransA)) throw new ArgumentOutOfRangeException(prefix + nameof(TransA), TransA, null);
        if (!Enum.IsDefined(TransB)) throw new ArgumentOutOfRangeException(prefix + nameof(TransB), TransB, null);
        if (!Enum.IsDefined(Epilogue)) throw new ArgumentOutOfRangeException(prefix + nameof(Epilogue), Epilogue, null);
        if (InputType is not (CudaDataType.R16BF or CudaDataType.R16F or CudaDataType.R32F))
            throw new ArgumentOutOfRangeException(prefix + nameof(InputType), InputType, "must be bf16, fp16 or fp32.");
        if (OutputType is not (CudaDataType.R16BF or CudaDataType.R16F or CudaDataType.R32F))
            throw new ArgumentOutOfRangeException(prefix + nameof(OutputType), OutputType, "must be bf16, fp16 or fp32.");
        if (InputType == CudaDataType.R32F && OutputType != CudaDataType.R32F)
            throw new ArgumentException("fp32 inputs need an fp32 output.", prefix + nameof(OutputType));
        if (LeadingA < RowsOfA)
            throw new ArgumentOutOfRangeException(prefix + nameof(Lda), LeadingA, $"A is stored with {RowsOfA} rows, so Lda must be at least {RowsOfA}.");
        if (LeadingB < RowsOfB)
            throw new ArgumentOutOfRangeException(prefix + nameof(Ldb), LeadingB, $"B is stored with {RowsOfB} rows, so Ldb must be at least {RowsOfB}.");
        if (LeadingD < M)
            throw new ArgumentOutOfRangeException(prefix + nameof(Ldd), LeadingD, $"D has {M} rows, so Ldd must be at least {M}.");
        if (BatchCount <= 0) throw new ArgumentOutOfRangeException(prefix + nameof(BatchCount), BatchCount, "must be positive.");
        if (BatchStrideA < 0) throw new ArgumentOutOfRangeException(prefix + nameof(StrideA), StrideA, "must not be negative.");
        if (BatchStrideB < 0) throw new ArgumentOutOfRangeException(prefix + nameof(StrideB), StrideB, "must not be negative.");
        if (BatchCount > 1 && BatchStrideD < (long)LeadingD * N)
            throw new ArgumentOutOfRangeException(prefix + nameof(StrideD), StrideD, "batches of D must not overlap.");
    }

    /// <inheritdoc />
    public override string ToString() =>
        $"{M}x{N}x{K} {TransA}/{TransB} {InputType}->{OutputType} epilogue {Epilogue}" + (BatchCount > 1 ? $" batch {BatchCount}" : "");
}
