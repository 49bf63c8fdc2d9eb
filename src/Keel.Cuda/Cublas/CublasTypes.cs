namespace Keel.Cuda.Cublas;

/// <summary>
/// Element types of matrices passed to cuBLAS and cuBLASLt (<c>cudaDataType</c>, library_types.h). The values are the
/// header's; only types present from CUDA 11.8 on are listed.
/// </summary>
public enum CudaDataType
{
    /// <summary>fp32 (<c>CUDA_R_32F</c>).</summary>
    R32F = 0,
    /// <summary>fp64 (<c>CUDA_R_64F</c>).</summary>
    R64F = 1,
    /// <summary>fp16 (<c>CUDA_R_16F</c>).</summary>
    R16F = 2,
    /// <summary>Signed 8-bit integer (<c>CUDA_R_8I</c>).</summary>
    R8I = 3,
    /// <summary>Signed 32-bit integer (<c>CUDA_R_32I</c>).</summary>
    R32I = 10,
    /// <summary>bfloat16 (<c>CUDA_R_16BF</c>).</summary>
    R16BF = 14,
    /// <summary>fp8 with 4 exponent and 3 mantissa bits (<c>CUDA_R_8F_E4M3</c>).</summary>
    R8FE4M3 = 28,
    /// <summary>fp8 with 5 exponent and 2 mantissa bits (<c>CUDA_R_8F_E5M2</c>).</summary>
    R8FE5M2 = 29,
}

/// <summary>Whether cuBLAS uses a matrix as stored or transposed (<c>cublasOperation_t</c>).</summary>
public enum CublasOperation
{
    /// <summary>As stored (<c>CUBLAS_OP_N</c>).</summary>
    None = 0,
    /// <summary>Transposed (<c>CUBLAS_OP_T</c>).</summary>
    Transpose = 1,
}

/// <summary>The precision cuBLAS multiplies and accumulates in (<c>cublasComputeType_t</c>).</summary>
public enum CublasComputeType
{
    /// <summary>fp16 accumulation (<c>CUBLAS_COMPUTE_16F</c>).</summary>
    Compute16F = 64,
    /// <summary>fp32 accumulation, tensor cores allowed for 16-bit inputs (<c>CUBLAS_COMPUTE_32F</c>).</summary>
    Compute32F = 68,
    /// <summary>fp32 accumulation with strictly fp32 arithmetic (<c>CUBLAS_COMPUTE_32F_PEDANTIC</c>).</summary>
    Compute32FPedantic = 69,
    /// <summary>fp32 accumulation, inputs may be rounded to TF32 (<c>CUBLAS_COMPUTE_32F_FAST_TF32</c>).</summary>
    Compute32FFastTF32 = 77,
    /// <summary>fp64 accumulation (<c>CUBLAS_COMPUTE_64F</c>).</summary>
    Compute64F = 70,
}

/// <summary>Which GEMM algorithm cuBLAS uses (<c>cublasGemmAlgo_t</c>); the default lets its heuristics choose.</summary>
public enum CublasGemmAlgorithm
{
    /// <summary>Heuristic choice (<c>CUBLAS_GEMM_DEFAULT</c>).</summary>
    Default = -1,
    /// <summary>Heuristic choice preferring tensor cores; deprecated alias kept by cuBLAS (<c>CUBLAS_GEMM_DEFAULT_TENSOR_OP</c>).</summary>
    DefaultTensorOp = 99,
}

/// <summary>
/// cuBLAS math modes (<c>cublasMath_t</c>). <see cref="DisallowReducedPrecisionReduction"/> is a flag that may be
/// combined with one of the others with <c>|</c>.
/// </summary>
public enum CublasMathMode
{
    /// <summary>Fastest math that keeps the compute type's precision: no TF32 for fp32 GEMMs (<c>CUBLAS_DEFAULT_MATH</c>).</summary>
    Default = 0,
    /// <summary>Strict arithmetic in the compute type for every call (<c>CUBLAS_PEDANTIC_MATH</c>).</summary>
    Pedantic = 2,
    /// <summary>Lets fp32 routines use TF32 tensor cores (<c>CUBLAS_TF32_TENSOR_OP_MATH</c>).</summary>
    TF32TensorOp = 3,
    /// <summary>Forces reductions to the accumulator type even when the output type is narrower (<c>CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION</c>).</summary>
    DisallowReducedPrecisionReduction = 16,
}
