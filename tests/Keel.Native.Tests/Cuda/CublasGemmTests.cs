namespace Keel.Native.Tests.Cuda;

/// <summary>cuBLAS GEMMs (column-major) against double-precision products of the same inputs. Skipped without a GPU.</summary>
[Collection(CudaDeviceCollection.Name)]
public sealed class CublasGemmTests
{
    private const long WorkspaceBytes = 32L << 20;

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public void Bf16GemmWithFp32OutputMatchesTheDoubleProduct(bool transA, bool transB)
    {
        using var context = CudaTestDevice.OpenOrSkip();
        const int m = 257, n = 130, k = 96;
        const float alpha = 0.75f, beta = 0.5f;
        var lda = transA ? k : m;
        var ldb = transB ? n : k;
        var a = CudaTestData.RandomBf16Values(m * k);
        var b = CudaTestData.RandomBf16Values(k * n);
        var c = CudaTestData.RandomFloats(m * n);
        var expected = CudaTestData.Product(transA, transB, m, n, k, a, lda, b, ldb);
        for (var i = 0; i < expected.Length; i++) expected[i] = alpha * expected[i] + beta * (double)c[i];
        using var gemm = new Gemm(context);
        using var da = Upload(context, CudaTestData.ToBf16(a));
        using var db = Upload(context, CudaTestData.ToBf16(b));
        using var dc = Upload(context, c);

        gemm.Cublas.GemmBf16(Op(transA), Op(transB), m, n, k, alpha, da.Address, lda, db.Address, ldb, beta, dc.Address, m, CudaDataType.R32F);
        gemm.Stream.Synchronize();
        var result = CudaTestData.Poisoned(m * n, float.NaN);
        dc.CopyTo<float>(result);

        var error = CudaTestData.RelativeError(result, expected);
        Assert.True(error < 1e-2, $"relative error {error}");
    }

    [Fact]
    public void Bf16GemmWithBf16OutputWritesEveryElement()
    {
        using var context = CudaTestDevice.OpenOrSkip();
        const int m = 192, n = 72, k = 136;
        var a = CudaTestData.RandomBf16Values(m * k);
        var b = CudaTestData.RandomBf16Values(k * n);
        var expected = CudaTestData.Product(false, false, m, n, k, a, m, b, k);
        using var gemm = new Gemm(context);
        using var da = Upload(context, CudaTestData.ToBf16(a));
        using var db = Upload(context, CudaTestData.ToBf16(b));
        using var dc = Upload(context, CudaTestData.Poisoned(m * n, BFloat16.FromSingle(float.NaN)));

        gemm.Cublas.GemmBf16(CublasOperation.None, CublasOperation.None, m, n, k, 1f, da.Address, m, db.Address, k, 0f, dc.Address, m,
                             CudaDataType.R16BF);
        gemm.Stream.Synchronize();
        var result = new BFloat16[m * n];
        dc.CopyTo<BFloat16>(result);

        var error = CudaTestData.RelativeError(CudaTestData.ToFloats(result), expected);
        Assert.True(error < 1e-2, $"relative error {error}");
    }

    [Fact]
    public void StridedBatchedBf16GemmComputesEachProblem()
    {
        using var context = CudaTestDevice.OpenOrSkip();
        const int m = 64, n = 48, k = 80, batch = 3;
        const long strideA = m * k, strideB = n * k, strideC = m * n;
        var a = CudaTestData.RandomBf16Values(batch * m * k);
        var b = CudaTestData.RandomBf16Values(batch * n * k); // each B stored n x k and used transposed
        var expected = new double[batch * m * n];
        for (var p = 0; p < batch; p++)
            CudaTestData.Product(false, true, m, n, k, a.AsSpan((int)(p * strideA)), m, b.AsSpan((int)(p * strideB)), n)
                .CopyTo(expected, p * strideC);
        using var gemm = new Gemm(context);
        using var da = Upload(context, CudaTestData.ToBf16(a));
        using var db = Upload(context, CudaTestData.ToBf16(b));
        using var dc = Upload(context, CudaTestData.Poisoned(batch * m * n, float.NaN));

        gemm.Cublas.GemmBf16StridedBatched(CublasOperation.None, CublasOperation.Transpose, m, n, k, 1f, da.Address, m, strideA,
                                           db.Address, n, strideB, 0f, dc.Address, m, strideC, batch, CudaDataType.R32F);
        gemm.Stream.Synchronize();
        var result = new float[batch * m * n];
        dc.CopyTo<float>(result);

        var error = CudaTestData.RelativeError(result, expected);
        Assert.True(error < 1e-2, $"relative error {error}");
    }

    [Fact]
    public void Fp32GemmMatchesTheDoubleProductWithoutTf32Rounding()
    {
        using var context = CudaTestDevice.OpenOrSkip();
        const int m = 200, n = 150, k = 300;
        var a = CudaTestData.RandomFloats(m * k);
        var b = CudaTestData.RandomFloats(k * n);
        var expected = CudaTestData.Product(false, false, m, n, k, a, m, b, k);
        using var gemm = new Gemm(context);
        using var da = Upload(context, a);
        using var db = Upload(context, b);
        using var dc = Upload(context, CudaTestData.Poisoned(m * n, float.NaN));

        gemm.Cublas.GemmFp32(CublasOperation.None, CublasOperation.None, m, n, k, 1f, da.Address, m, db.Address, k, 0f, dc.Address, m);
        gemm.Stream.Synchronize();
        var result = new float[m * n];
        dc.CopyTo<float>(result);

        var error = CudaTestData.RelativeError(result, expected);
        Assert.True(error < 1e-5, $"relative error {error}");
        Assert.True(CublasHandle.LibraryVersion.Major >= 11);
    }

    private static CublasOperation Op(bool transpose) => transpose ? CublasOperation.Transpose : CublasOperation.None;

    private static DeviceMemory Upload<T>(CudaContext context, T[] values) where T : unmanaged
    {
        var memory = DeviceMemory.Allocate<T>(context, values.Length);
        memory.CopyFrom<T>(values);
        return memory;
    }

    /// <summary>A blocking stream, a workspace and a cuBLAS handle bound to both.</summary>
    private sealed class Gemm : IDisposable
    {
        public Gemm(CudaContext context)
        {
            Stream = CudaStream.Create(context);
            Workspace = DeviceMemory.Allocate(context, WorkspaceBytes);
            Cublas = CublasHandle.Create(Stream, Workspace);
        }

        public CudaStream Stream { get; }
        public DeviceMemory Workspace { get; }
        public CublasHandle Cublas { get; }

        public void Dispose()
        {
            Cublas.Dispose();
            Workspace.Dispose();
            Stream.Dispose();
        }
    }
}
