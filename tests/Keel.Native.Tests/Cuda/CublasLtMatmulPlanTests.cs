using Keel.Cuda.CublasLt;

namespace Keel.Native.Tests.Cuda;

/// <summary>cuBLASLt matmul plans with epilogues against double-precision references. Skipped without a GPU.</summary>
[Collection(CudaDeviceCollection.Name)]
public sealed class CublasLtMatmulPlanTests
{
    private const long WorkspaceBytes = 32L << 20;

    [Fact]
    public void BiasEpilogueAddsOneValuePerRow()
    {
        using var context = CudaTestDevice.OpenOrSkip();
        const int m = 128, n = 64, k = 256;
        var a = CudaTestData.RandomBf16Values(m * k);
        var b = CudaTestData.RandomBf16Values(k * n);
        var bias = CudaTestData.RandomFloats(m);
        var expected = CudaTestData.Product(false, false, m, n, k, a, m, b, k);
        for (var j = 0; j < n; j++)
            for (var i = 0; i < m; i++) expected[i + j * m] += bias[i];
        using var lt = new Lt(context);
        using var plan = CublasLtMatmulPlan.Create(lt.Handle, new CublasLtMatmulOptions(m, n, k)
        {
            OutputType = CudaDataType.R32F,
            Epilogue = MatmulEpilogue.Bias,
        }, WorkspaceBytes);
        using var da = Upload(context, CudaTestData.ToBf16(a));
        using var db = Upload(context, CudaTestData.ToBf16(b));
        using var dbias = Upload(context, bias);
        using var dd = Upload(context, CudaTestData.Poisoned(m * n, float.NaN));

        plan.Execute(da.Address, db.Address, dd.Address, dbias.Address, lt.Workspace, lt.Stream);
        lt.Stream.Synchronize();
        var result = new float[m * n];
        dd.CopyTo<float>(result);

        var error = CudaTestData.RelativeError(result, expected);
        Assert.True(error < 1e-2, $"relative error {error}");
        Assert.InRange(plan.WorkspaceBytes, 0, WorkspaceBytes);
    }

    [Theory]
    [InlineData(MatmulEpilogue.Gelu)]
    [InlineData(MatmulEpilogue.GeluBias)]
    public void GeluEpilogueOnTransposedWeightsWritesBf16(MatmulEpilogue epilogue)
    {
        using var context = CudaTestDevice.OpenOrSkip();
        const int m = 96, n = 80, k = 192;
        var a = CudaTestData.RandomBf16Values(k * m); // stored k x m, used transposed: a weight matrix [out, in] in row-major terms
        var b = CudaTestData.RandomBf16Values(k * n);
        var bias = CudaTestData.RandomBf16Values(m);
        var withBias = epilogue == MatmulEpilogue.GeluBias;
        var expected = CudaTestData.Product(true, false, m, n, k, a, k, b, k);
        for (var j = 0; j < n; j++)
            for (var i = 0; i < m; i++)
                expected[i + j * m] = CudaTestData.Gelu(expected[i + j * m] + (withBias ? bias[i] : 0));
        using var lt = new Lt(context);
        using var plan = CublasLtMatmulPlan.Create(lt.Handle, new CublasLtMatmulOptions(m, n, k)
        {
            TransA = CublasOperation.Transpose,
            Epilogue = epilogue,
        }, WorkspaceBytes);
        using var da = Upload(context, CudaTestData.ToBf16(a));
        using var db = Upload(context, CudaTestData.ToBf16(b));
        using var dbias = Upload(context, CudaTestData.ToBf16(bias));
        using var dd = Upload(context, CudaTestData.Poisoned(m * n, BFloat16.FromSingle(float.NaN)));

        plan.Execute(da.Address, db.Address, dd.Address, withBias ? dbias.Address : 0, lt.Workspace, lt.Stream);
        lt.Stream.Synchronize();
        var result = new BFloat16[m * n];
        dd.CopyTo<BFloat16>(result);

        var error = CudaTestData.RelativeError(CudaTestData.ToFloats(result), expected);
        Assert.True(error < 1e-2, $"relative error {error}");
    }

    [Fact]
    public void BatchedPlanComputesEachProblemAndAccumulatesWithBeta()
    {
        using var context = CudaTestDevice.OpenOrSkip();
        const int m = 64, n = 32, k = 48, batch = 2;
        const float alpha = 1.5f, beta = 1f;
        var a = CudaTestData.RandomBf16Values(batch * m * k);
        var b = CudaTestData.RandomBf16Values(batch * k * n);
        var d = CudaTestData.RandomFloats(batch * m * n);
        var expected = new double[batch * m * n];
        for (var p = 0; p < batch; p++)
        {
            var product = CudaTestData.Product(false, false, m, n, k, a.AsSpan(p * m * k), m, b.AsSpan(p * k * n), k);
            for (var i = 0; i < m * n; i++) expected[p * m * n + i] = alpha * product[i] + beta * (double)d[p * m * n + i];
        }
        using var lt = new Lt(context);
        using var plan = CublasLtMatmulPlan.Create(lt.Handle, new CublasLtMatmulOptions(m, n, k)
        {
            OutputType = CudaDataType.R32F,
            BatchCount = batch,
        }, WorkspaceBytes);
        using var da = Upload(context, CudaTestData.ToBf16(a));
        using var db = Upload(context, CudaTestData.ToBf16(b));
        using var dd = Upload(context, d);

        plan.Execute(da.Address, db.Address, dd.Address, 0, lt.Workspace, lt.Stream, alpha, beta);
        lt.Stream.Synchronize();
        var result = CudaTestData.Poisoned(batch * m * n, float.NaN);
        dd.CopyTo<float>(result);

        var error = CudaTestData.RelativeError(result, expected);
        Assert.True(error < 1e-2, $"relative error {error}");
    }

    [Fact]
    public void ExecuteRefusesOperandsThePlanWasNotBuiltFor()
    {
        using var context = CudaTestDevice.OpenOrSkip();
        using var lt = new Lt(context);
        using var plan = CublasLtMatmulPlan.Create(lt.Handle, new CublasLtMatmulOptions(64, 64, 64), WorkspaceBytes);
        using var biased = CublasLtMatmulPlan.Create(lt.Handle, new CublasLtMatmulOptions(64, 64, 64) { Epilogue = MatmulEpilogue.Bias },
                                                     WorkspaceBytes);
        using var memory = DeviceMemory.Allocate(context, 3 * 64 * 64 * 2);
        var a = memory.Address;
        var b = a + 64 * 64 * 2;
        var d = b + 64 * 64 * 2;

        Assert.Equal("a", Assert.Throws<ArgumentException>(() => plan.Execute(a + 2, b, d, 0, lt.Workspace, lt.Stream)).ParamName);
        Assert.Equal("d", Assert.Throws<ArgumentException>(() => plan.Execute(a, b, 0, 0, lt.Workspace, lt.Stream)).ParamName);
        Assert.Equal("bias", Assert.Throws<ArgumentException>(() => plan.Execute(a, b, d, d, lt.Workspace, lt.Stream)).ParamName);
        Assert.Equal("bias", Assert.Throws<ArgumentException>(() => biased.Execute(a, b, d, 0, lt.Workspace, lt.Stream)).ParamName);
        Assert.Equal("options.K", Assert.ThrowsAny<ArgumentException>(
            () => CublasLtMatmulPlan.Create(lt.Handle, new CublasLtMatmulOptions(64, 64, 0), WorkspaceBytes)).ParamName);
    }

    private static DeviceMemory Upload<T>(CudaContext context, T[] values) where T : unmanaged
    {
        var memory = DeviceMemory.Allocate<T>(context, values.Length);
        memory.CopyFrom<T>(values);
        return memory;
    }

    /// <summary>A blocking stream, a workspace and a cuBLASLt handle.</summary>
    private sealed class Lt : IDisposable
    {
        public Lt(CudaContext context)
        {
            Stream = CudaStream.Create(context);
            Workspace = DeviceMemory.Allocate(context, WorkspaceBytes);
            Handle = CublasLtHandle.Create(context);
        }

        public CudaStream Stream { get; }
        public DeviceMemory Workspace { get; }
        public CublasLtHandle Handle { get; }

        public void Dispose()
        {
            Handle.Dispose();
            Workspace.Dispose();
            Stream.Dispose();
        }
    }
}
