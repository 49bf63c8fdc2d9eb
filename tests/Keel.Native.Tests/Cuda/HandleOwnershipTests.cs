using System.Diagnostics;
using Keel.Cuda.Nvrtc;

namespace Keel.Native.Tests.Cuda;

/// <summary>
/// Handles pass through the bindings as SafeHandles: a call with a disposed handle is refused before it reaches the
/// library, and a Dispose during a call on another thread defers the release until the call has returned. NVRTC needs
/// no GPU, so its program shows both everywhere the compile tier runs; the driver's handles are checked on a GPU.
/// </summary>
[Collection(CudaDeviceCollection.Name)]
public sealed unsafe class HandleOwnershipTests
{
    [Fact]
    public void CallWithADisposedProgramIsRefusedBeforeNvrtcSeesIt()
    {
        Requirements.Nvrtc();
        var program = CreateProgram("""extern "C" __global__ void keel_test_empty() {}""");
        NvrtcNative.Check(NvrtcNative.nvrtcGetProgramLogSize(program, out _), "nvrtcGetProgramLogSize");

        program.Dispose();

        Assert.True(program.IsClosed);
        var refused = Assert.Throws<ObjectDisposedException>(() => NvrtcNative.nvrtcGetProgramLogSize(program, out _));
        Assert.Contains(nameof(NvrtcProgram), refused.Message);
        program.Dispose(); // a second Dispose is harmless
    }

    [Fact]
    public void DisposeDuringACallOnAnotherThreadReleasesTheProgramWhenTheCallReturns()
    {
        Requirements.Nvrtc();
        // Two fully unrolled kernels take NVRTC about a second on one core: the Dispose lands inside the call.
        var source = string.Concat(Enumerable.Range(0, 2).Select(k => $$"""
            extern "C" __global__ void keel_test_slow{{k}}(float* y)
            {
                float x = y[threadIdx.x];
            #pragma unroll
                for (int i = 0; i < 2000; i++) x = x * 1.0001f + __sinf(x * (i + {{k}}));
                y[threadIdx.x] = x;
            }

            """));
        var program = CreateProgram(source);
        using var started = new ManualResetEventSlim();
        var clock = Stopwatch.StartNew();
        TimeSpan returnedAt = default;

        var status = -1;
        Exception? failure = null;
        var compile = new Thread(() =>
        {
            using var strings = new Utf8Strings();
            var options = stackalloc byte*[1];
            options[0] = strings.Add("--gpu-architecture=sm_80");
            started.Set();
            try
            {
                status = NvrtcNative.nvrtcCompileProgram(program, 1, options);
            }
            catch (Exception e)
            {
                failure = e;
            }
            returnedAt = clock.Elapsed;
        });
        compile.Start();
        started.Wait(TestContext.Current.CancellationToken);
        Thread.Sleep(50); // well inside a call that takes a second here, and far more than the step into it
        var disposedAt = clock.Elapsed;
        program.Dispose();
        compile.Join();

        if (failure is not null)
        {
            // The compile thread was held up past the Dispose before it made the call: refused cleanly, the other half
            // of the contract, but the deferred release this test is about was not exercised.
            Assert.IsType<ObjectDisposedException>(failure);
            Assert.Skip("the compile thread reached its call only after the Dispose, so this run did not exercise the race");
        }
        Assert.True(disposedAt < returnedAt, $"the Dispose at {disposedAt} came after the call returned at {returnedAt}");
        Assert.Equal(0, status); // the program stayed valid for the whole call
        Assert.True(program.IsClosed);
        Assert.Throws<ObjectDisposedException>(() => NvrtcNative.nvrtcGetProgramLogSize(program, out _));
    }

    [Fact]
    public void DriverAndLibraryHandlesRefuseCallsOnceDisposed()
    {
        using var context = CudaTestDevice.OpenOrSkip();
        var stream = CudaStream.Create(context);
        var evt = CudaEvent.Create(context);
        var memory = DeviceMemory.Allocate<float>(context, 256);
        var values = new float[256];
        stream.Dispose();
        evt.Dispose();
        memory.Dispose();

        Assert.Throws<ObjectDisposedException>(stream.Synchronize);
        Assert.Throws<ObjectDisposedException>(evt.Synchronize);
        Assert.Throws<ObjectDisposedException>(() => memory.CopyFrom<float>(values));
        Assert.Throws<ObjectDisposedException>(() => memory.FillBytes(0));
        using var live = CudaStream.Create(context);
        using var other = CudaEvent.Create(context);
        Assert.Throws<ObjectDisposedException>(() => other.Record(stream));

        using var workspace = DeviceMemory.Allocate(context, 1 << 20);
        var cublas = CublasHandle.Create(live, workspace);
        cublas.Dispose();
        Assert.Throws<ObjectDisposedException>(() => cublas.SetMathMode(CublasMathMode.Default));
    }

    [Fact]
    public void KernelOfAnUnloadedModuleIsRefused()
    {
        using var context = CudaTestDevice.OpenOrSkip();
        var info = CudaDeviceInfo.Query(context.DeviceOrdinal);
        var compiled = NvrtcCompiler.Compile("""extern "C" __global__ void keel_test_empty() {}""", "keel_test_empty.cu",
                                             new Dictionary<string, string>(), [$"--gpu-architecture={info.Architecture}"], NvrtcOutput.Cubin);
        Assert.True(compiled.Succeeded, compiled.Log);
        var module = CudaModule.Load(context, compiled.Image);
        var kernel = module.GetFunction("keel_test_empty");
        using var stream = CudaStream.Create(context);
        kernel.Launch(LaunchShape.Linear(1, 32), stream, null);
        stream.Synchronize();

        module.Dispose();

        Assert.Throws<ObjectDisposedException>(() => kernel.Launch(LaunchShape.Linear(1, 32), stream, null));
        Assert.Throws<ObjectDisposedException>(() => _ = kernel.RegisterCount);
    }

    [Fact]
    public void MemoryOutlivesItsDisposedContextUntilItIsReleased()
    {
        var context = CudaTestDevice.OpenOrSkip();
        var memory = DeviceMemory.Allocate<float>(context, 256);
        context.Dispose();

        // The context object is gone, so operations that make it current are refused ...
        Assert.Throws<ObjectDisposedException>(() => memory.FillBytes(0));
        // ... but the memory's claim keeps the driver's context alive for its release, which a failure would only trace.
        var released = new ReleaseFailures();
        Trace.Listeners.Add(released);
        try
        {
            memory.Dispose();
        }
        finally
        {
            Trace.Listeners.Remove(released);
        }
        Assert.True(memory.IsClosed);
        Assert.Empty(released.Messages);
    }

    /// <summary>The release failures Keel.Cuda traces (a release must not throw, so it reports them this way).</summary>
    private sealed class ReleaseFailures : TraceListener
    {
        public List<string> Messages { get; } = [];

        public override void Write(string? message)
        {
        }

        public override void WriteLine(string? message)
        {
            if (message is not null && message.Contains("Keel.Cuda:", StringComparison.Ordinal))
                lock (Messages) Messages.Add(message);
        }
    }

    /// <summary>An NVRTC program of <paramref name="source"/> (NVRTC must be present).</summary>
    private static NvrtcProgram CreateProgram(string source)
    {
        using var strings = new Utf8Strings();
        var status = NvrtcNative.nvrtcCreateProgram(out var program, strings.Add(source), strings.Add("keel_test.cu"), 0, null, null);
        NvrtcNative.Check(program.DiscardUnlessCreated(status), "nvrtcCreateProgram");
        return program;
    }
}
