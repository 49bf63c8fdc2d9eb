using Keel.Cuda.CublasLt;

namespace Keel.Native.Tests.Cuda;

/// <summary>Bad sizes and shapes are refused, naming the argument, before any library call; none of these needs a GPU.</summary>
public sealed class CudaArgumentValidationTests
{
    [Theory]
    [InlineData(-1, 4, "byteOffset")]
    [InlineData(1025, 0, "byteOffset")]
    [InlineData(0, -1, "byteCount")]
    [InlineData(1000, 25, "byteCount")]
    [InlineData(0, 1025, "byteCount")]
    public void DeviceRangesOutsideTheAllocationAreRefused(long offset, long count, string expectedName)
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => DeviceMemory.ValidateRange(1024, offset, count, "byteOffset", "byteCount"));
        Assert.Equal(expectedName, e.ParamName);
    }

    [Theory]
    [InlineData(0, 1024)]
    [InlineData(1000, 24)]
    [InlineData(1024, 0)]
    public void DeviceRangesInsideTheAllocationPass(long offset, long count) =>
        DeviceMemory.ValidateRange(1024, offset, count, "byteOffset", "byteCount");

    [Fact]
    public void NegativeDeviceOrdinalIsRefusedBeforeTheDriverIsTouched()
    {
        Assert.Equal("ordinal", Assert.Throws<ArgumentOutOfRangeException>(() => CudaDeviceInfo.Query(-1)).ParamName);
        Assert.Equal("deviceOrdinal", Assert.Throws<ArgumentOutOfRangeException>(() => CudaContext.RetainPrimary(-1)).ParamName);
    }

    [Theory]
    [InlineData(0, 1, 1, 32, 1, 1, 0, "gridX")]
    [InlineData(1, 65536, 1, 32, 1, 1, 0, "gridY")]
    [InlineData(1, 1, 0, 32, 1, 1, 0, "gridZ")]
    [InlineData(1, 1, 1, 0, 1, 1, 0, "blockX")]
    [InlineData(1, 1, 1, 64, 32, 1, 0, "blockX")]
    [InlineData(1, 1, 1, 32, 1, 1, -1, "sharedMemoryBytes")]
    public void LaunchExtentsOutOfRangeAreRefused(int gx, int gy, int gz, int bx, int by, int bz, int shared, string expectedName)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => LaunchShape.Validate(gx, gy, gz, bx, by, bz, shared));
        Assert.Equal(expectedName, e.ParamName);
    }

    [Fact]
    public void LinearShapeCoversEveryElementWithWholeBlocks()
    {
        var shape = LaunchShape.Linear(1000, 256);

        Assert.Equal(new Dim3(4), shape.Grid);
        Assert.Equal(new Dim3(256), shape.Block);
        Assert.Throws<ArgumentOutOfRangeException>(() => new LaunchShape(new Dim3(1), new Dim3(2048)));
        Assert.Throws<ArgumentOutOfRangeException>(() => LaunchShape.Linear(0, 256));
    }

    [Theory]
    [InlineData(CublasOperation.None, CublasOperation.None, 0, 8, 8, 8, 8, 8, "m")]
    [InlineData(CublasOperation.None, CublasOperation.None, 8, -1, 8, 8, 8, 8, "n")]
    [InlineData(CublasOperation.None, CublasOperation.None, 8, 8, 0, 8, 8, 8, "k")]
    [InlineData(CublasOperation.None, CublasOperation.None, 16, 8, 4, 15, 4, 16, "lda")]
    [InlineData(CublasOperation.Transpose, CublasOperation.None, 16, 8, 4, 3, 4, 16, "lda")]
    [InlineData(CublasOperation.None, CublasOperation.None, 16, 8, 4, 16, 3, 16, "ldb")]
    [InlineData(CublasOperation.None, CublasOperation.Transpose, 16, 8, 4, 16, 7, 16, "ldb")]
    [InlineData(CublasOperation.None, CublasOperation.None, 16, 8, 4, 16, 4, 15, "ldc")]
    [InlineData((CublasOperation)7, CublasOperation.None, 16, 8, 4, 16, 4, 16, "transA")]
    public void GemmShapesThatDoNotFitAreRefused(CublasOperation transA, CublasOperation transB, int m, int n, int k,
                                                 int lda, int ldb, int ldc, string expectedName)
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => CublasHandle.ValidateGemm(transA, transB, m, n, k, lda, ldb, ldc));
        Assert.Equal(expectedName, e.ParamName);
    }

    [Fact]
    public void TransposedGemmUsesTheStoredRowCountsForLeadingDimensions()
    {
        // op(A) = A^T is 16 x 4, so A is stored 4 x 16 and lda = 4 suffices; likewise ldb = n for op(B) = B^T.
        CublasHandle.ValidateGemm(CublasOperation.Transpose, CublasOperation.Transpose, 16, 8, 4, 4, 8, 16);
        Assert.Equal("batchCount", Assert.Throws<ArgumentOutOfRangeException>(() => CublasHandle.ValidateBatch(0, 0, 0, 0)).ParamName);
        Assert.Equal("strideC", Assert.Throws<ArgumentOutOfRangeException>(() => CublasHandle.ValidateBatch(0, 0, -1, 1)).ParamName);
    }

    [Fact]
    public void MatmulOptionsNameTheFieldThatIsWrong()
    {
        var valid = new CublasLtMatmulOptions(64, 32, 16);
        valid.Validate();

        Assert.Equal("options.M", Assert.ThrowsAny<ArgumentException>(() => (valid with { M = 0 }).Validate()).ParamName);
        Assert.Equal("options.Lda", Assert.ThrowsAny<ArgumentException>(() => (valid with { Lda = 63 }).Validate()).ParamName);
        Assert.Equal("options.Lda",
                     Assert.ThrowsAny<ArgumentException>(() => (valid with { TransA = CublasOperation.Transpose, Lda = 15 }).Validate()).ParamName);
        Assert.Equal("options.Ldd", Assert.ThrowsAny<ArgumentException>(() => (valid with { Ldd = 10 }).Validate()).ParamName);
        Assert.Equal("options.OutputType",
                     Assert.ThrowsAny<ArgumentException>(() => (valid with { InputType = CudaDataType.R32F }).Validate()).ParamName);
        Assert.Equal("options.InputType",
                     Assert.ThrowsAny<ArgumentException>(() => (valid with { InputType = CudaDataType.R8I }).Validate()).ParamName);
        Assert.Equal("options.BatchCount", Assert.ThrowsAny<ArgumentException>(() => (valid with { BatchCount = 0 }).Validate()).ParamName);
        Assert.Equal("options.StrideD",
                     Assert.ThrowsAny<ArgumentException>(() => (valid with { BatchCount = 2, StrideD = 100 }).Validate()).ParamName);
    }

    [Fact]
    public void MatmulOptionsDefaultToTightlyPackedOperands()
    {
        var options = new CublasLtMatmulOptions(64, 32, 16) { TransA = CublasOperation.Transpose, BatchCount = 3 };

        Assert.Equal(16, options.LeadingA); // A^T is 64 x 16, so A is stored 16 x 64
        Assert.Equal(16, options.LeadingB);
        Assert.Equal(64, options.LeadingD);
        Assert.Equal(16L * 64, options.BatchStrideA);
        Assert.Equal(16L * 32, options.BatchStrideB);
        Assert.Equal(64L * 32, options.BatchStrideD);
        Assert.False(options.HasBias);
        Assert.True((options with { Epilogue = MatmulEpilogue.GeluBias }).HasBias);
    }
}
