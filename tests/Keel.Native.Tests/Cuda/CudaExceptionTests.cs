namespace Keel.Native.Tests.Cuda;

public sealed class CudaExceptionTests
{
    [Fact]
    public void MessageNamesCallErrorNameStatusAndDescription()
    {
        var e = new CudaException("cuMemAlloc", 2, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory");

        Assert.Equal("cuMemAlloc failed: CUDA_ERROR_OUT_OF_MEMORY (2): out of memory", e.Message);
        Assert.Equal("cuMemAlloc", e.Call);
        Assert.Equal(2, e.Status);
        Assert.Equal("CUDA_ERROR_OUT_OF_MEMORY", e.ErrorName);
    }

    [Fact]
    public void MessageWithoutDescriptionEndsAtTheStatus()
    {
        var e = new CudaException("cublasGemmEx", 7, "CUBLAS_STATUS_INVALID_VALUE");

        Assert.Equal("cublasGemmEx failed: CUBLAS_STATUS_INVALID_VALUE (7)", e.Message);
    }
}
