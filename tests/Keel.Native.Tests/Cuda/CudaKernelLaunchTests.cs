using Keel.Cuda.Nvrtc;

namespace Keel.Native.Tests.Cuda;

/// <summary>Modules compiled by NVRTC for the device's exact architecture, launched directly and through a graph.</summary>
[Collection(CudaDeviceCollection.Name)]
public sealed unsafe class CudaKernelLaunchTests
{
    private const string AxpySource = """
        extern "C" __global__ void keel_test_axpy(int n, float a, const float* x, float* y)
        {
            int i = blockIdx.x * blockDim.x + threadIdx.x;
            if (i < n) y[i] = a * x[i] + y[i];
        }
        """;

    [Fact]
    public void CompiledKernelRunsAndReportsItsAttributes()
    {
        using var context = CudaTestDevice.OpenOrSkip();
        var info = CudaDeviceInfo.Query(context.DeviceOrdinal);
        using var module = LoadAxpy(context, info);
        var axpy = module.GetFunction("keel_test_axpy");
        const int n = 100_003;
        const float a = 1.75f;
        var x = CudaTestData.RandomFloats(n);
        var y = CudaTestData.RandomFloats(n);
        using var dx = DeviceMemory.Allocate<float>(context, n);
        using var dy = DeviceMemory.Allocate<float>(context, n);
        using var stream = CudaStream.Create(context);
        dx.CopyFrom<float>(x);
        dy.CopyFrom<float>(y);

        LaunchAxpy(axpy, n, a, dx.Address, dy.Address, stream);
        stream.Synchronize();
        var result = CudaTestData.Poisoned(n, float.NaN);
        dy.CopyTo<float>(result);

        var expected = new double[n];
        for (var i = 0; i < n; i++) expected[i] = (double)a * x[i] + y[i];
        var error = CudaTestData.RelativeError(result, expected);
        Assert.True(error < 1e-6, $"relative error {error}");

        Assert.True(axpy.RegisterCount > 0);
        Assert.Equal(0, axpy.LocalMemoryBytes);
        Assert.Equal(0, axpy.StaticSharedMemoryBytes);
        Assert.InRange(axpy.MaxThreadsPerBlock, 256, 1024);
        axpy.SetMaxDynamicSharedMemory(info.MaxSharedMemoryPerBlockOptInBytes);
        Assert.Equal(info.MaxSharedMemoryPerBlockOptInBytes, axpy.MaxDynamicSharedMemoryBytes);
        var missing = Assert.Throws<CudaException>(() => module.GetFunction("keel_test_missing"));
        Assert.Equal("cuModuleGetFunction", missing.Call);
        Assert.Equal("CUDA_ERROR_NOT_FOUND", missing.ErrorName);
    }

    [Fact]
    public void CapturedGraphReplaysItsLaunches()
    {
        using var context = CudaTestDevice.OpenOrSkip();
        using var module = LoadAxpy(context, CudaDeviceInfo.Query(context.DeviceOrdinal));
        var axpy = module.GetFunction("keel_test_axpy");
        const int n = 65_537;
        const float a1 = 0.5f, a2 = -2.25f;
        var x = CudaTestData.RandomFloats(n);
        var y = CudaTestData.RandomFloats(n);
        using var dx = DeviceMemory.Allocate<float>(context, n);
        using var dy = DeviceMemory.Allocate<float>(context, n);
        using var stream = CudaStream.Create(context, nonBlocking: true);
        dx.CopyFrom<float>(x);
        dy.CopyFrom<float>(y);
        context.Synchronize(); // the stream is non-blocking, so nothing orders it after the uploads

        CudaGraph.BeginCapture(stream, StreamCaptureMode.ThreadLocal);
        LaunchAxpy(axpy, n, a1, dx.Address, dy.Address, stream);
        LaunchAxpy(axpy, n, a2, dx.Address, dy.Address, stream);
        using var graph = CudaGraph.EndCapture(stream);
        using var exec = graph.Instantiate();
        var afterCapture = new float[n];
        dy.CopyTo<float>(afterCapture);
        exec.Launch(stream);
        exec.Launch(stream);
        stream.Synchronize();
        var result = CudaTestData.Poisoned(n, float.NaN);
        dy.CopyTo<float>(result);

        Assert.Equal(y, afterCapture); // capturing records the launches without running them
        var expected = new double[n];
        for (var i = 0; i < n; i++) expected[i] = y[i] + 2.0 * ((double)a1 + a2) * x[i];
        var error = CudaTestData.RelativeError(result, expected);
        Assert.True(error < 1e-5, $"relative error {error}");
    }

    private static CudaModule LoadAxpy(CudaContext context, CudaDeviceInfo info)
    {
        var compiled = NvrtcCompiler.Compile(AxpySource, "keel_test_axpy.cu", new Dictionary<string, string>(),
                                             [$"--gpu-architecture={info.Architecture}"], NvrtcOutput.Cubin);
        Assert.True(compiled.Succeeded, compiled.Log);
        return CudaModule.Load(context, compiled.Image);
    }

    private static void LaunchAxpy(CudaFunction axpy, int n, float a, ulong x, ulong y, CudaStream stream)
    {
        var arguments = stackalloc void*[4];
        arguments[0] = &n;
        arguments[1] = &a;
        arguments[2] = &x;
        arguments[3] = &y;
        axpy.Launch(LaunchShape.Linear(n, 256), stream, arguments);
    }
}
