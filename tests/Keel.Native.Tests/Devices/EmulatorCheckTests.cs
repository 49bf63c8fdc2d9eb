namespace Keel.Native.Tests.Devices;

/// <summary>
/// A bug planted in a kernel (Devices/emulator_checks.cu) for each of the emulator's checking modes: the plain emulator
/// runs it without complaint, the mode reports it with a message that names the kernel and the cause, and the correct
/// twin passes under every mode.
/// </summary>
public class EmulatorCheckTests
{
    private static readonly string Source = Path.Combine(AppContext.BaseDirectory, "Devices", "emulator_checks.cu");

    [Fact]
    public void AMissingSyncthreadsIsReportedAsASharedMemoryRaceWithBothSourceLines()
    {
        const int n = 256;
        using var device = Open(EmulatorChecks.None);
        Assert.Null(Shift(device, synchronized: 0));  // the plain emulator's schedule happens to give the right result

        using var checkedDevice = Open(EmulatorChecks.Race);
        var error = Shift(checkedDevice, synchronized: 0);
        Assert.NotNull(error);
        Assert.Contains("KEEL_EMU_ERROR_RACE", error.Message);
        Assert.Contains("keel_check_shift", error.Message);
        Assert.Contains("emulator_checks.cu:12", error.Message);  // the write
        Assert.Contains("emulator_checks.cu:14", error.Message);  // the read
        Assert.Contains("separate them with __sync", error.Message);

        using var everything = Open(EmulatorChecks.All & ~EmulatorChecks.Limits);
        Assert.Null(Shift(everything, synchronized: 1));

        static KernelLaunchException? Shift(EmulatedDevice device, int synchronized)
        {
            var input = Enumerable.Range(0, 2 * n).Select(i => (float)i).ToArray();
            using var inBuffer = DeviceData.Upload(device, input, DType.Float32, new TensorShape(2 * n));
            using var outBuffer = DeviceData.Poisoned(device, DType.Float32, new TensorShape(2 * n));
            var error = Launch(device, "keel_check_shift", new LaunchShape(new Dim3(2), new Dim3(n)), inBuffer.Tensor, outBuffer.Tensor, synchronized);
            if (error is null)
                Assert.Equal(input.Select((_, i) => i % n == 0 ? 0f : i - 1), DeviceData.Download(device, outBuffer));
            return error;
        }
    }

    [Fact]
    public void AReadBeforeItsCpAsyncWaitSeesPoisonAndIsReported()
    {
        var input = Enumerable.Range(0, 512).Select(i => (float)i).ToArray();
        float[] Run(EmulatedDevice device, int early, out KernelLaunchException? error)
        {
            using var inBuffer = DeviceData.Upload(device, input, DType.Float32, new TensorShape(512));
            using var outBuffer = DeviceData.Poisoned(device, DType.Float32, new TensorShape(128));
            error = Launch(device, "keel_check_copy_rows", new LaunchShape(new Dim3(1), new Dim3(128)), inBuffer.Tensor, outBuffer.Tensor, early);
            return DeviceData.Download(device, outBuffer);
        }

        using (var asyncOnly = Open(EmulatorChecks.Async))
        {
            Assert.All(Run(asyncOnly, early: 1, out var error), v => Assert.True(float.IsNaN(v)));
            Assert.Null(error);
        }
        using (var race = Open(EmulatorChecks.Race | EmulatorChecks.Async))
        {
            Run(race, early: 1, out var error);
            Assert.NotNull(error);
            Assert.Contains("KEEL_EMU_ERROR_RACE", error.Message);
            Assert.Contains("is still copying into it", error.Message);
            Assert.Contains("emulator_checks.cu:24", error.Message);
            Assert.Equal(Enumerable.Range(0, 128).Select(t => input[4 * t] + input[4 * t + 3]), Run(race, early: 0, out error));
            Assert.Null(error);
        }
    }

    [Fact]
    public void AKernelThatReliesOnZeroedMemoryIsReported()
    {
        using var device = Open(EmulatorChecks.Init);
        const int n = 300;
        using var input = DeviceData.Upload(device, Enumerable.Repeat(2f, n).ToArray(), DType.Float32, new TensorShape(n));
        using var output = device.Allocate(DType.Float32, new TensorShape(n));
        Assert.All(DeviceData.Download(device, output), v => Assert.True(float.IsNaN(v)));  // fresh memory is not zero here

        var error = Launch(device, "keel_check_accumulate", new LaunchShape(new Dim3(3), new Dim3(128)), input.Tensor, output.Tensor, n);
        Assert.NotNull(error);
        Assert.Contains("KEEL_EMU_ERROR_UNINITIALIZED", error.Message);
        Assert.Contains("was never written", error.Message);
        Assert.Contains("emulator_checks.cu:31", error.Message);

        device.Clear(output);  // written by the host: now it may be read
        Assert.Null(Launch(device, "keel_check_accumulate", new LaunchShape(new Dim3(3), new Dim3(128)), input.Tensor, output.Tensor, n));
        Assert.All(DeviceData.Download(device, output), v => Assert.Equal(2f, v));
    }

    [Fact]
    public void ABlockOrderDependenceIsReportedInsteadOfHanging()
    {
        const int blocks = 12;
        KernelLaunchException? Chain(EmulatedDevice device)
        {
            using var flags = device.Allocate(DType.Int32, new TensorShape(blocks));
            using var output = DeviceData.Poisoned(device, DType.Float32, new TensorShape(blocks));
            device.Clear(flags);
            return Launch(device, "keel_check_chain", new LaunchShape(new Dim3(blocks), new Dim3(32)), flags.Tensor, output.Tensor);
        }

        using (var inIndexOrder = Open(EmulatorChecks.Spin, workers: 1))
            Assert.Null(Chain(inIndexOrder));  // blocks in index order on one worker: the dependence goes unseen
        foreach (var workers in new[] { 1, 2 })
        {
            using var shuffled = Open(EmulatorChecks.Order | EmulatorChecks.Spin, workers);
            var error = Chain(shuffled);
            Assert.NotNull(error);
            Assert.Contains("KEEL_EMU_ERROR_SPIN", error.Message);
            Assert.Contains("spins at emulator_checks.cu:39", error.Message);
            Assert.Contains("atomic ticket", error.Message);
            Assert.Contains("seed 7", error.Message);
        }
    }

    [Fact]
    public void ALaunchTooLargeForTheArchitectureIsRefused()
    {
        Requirements.Nvrtc();
        KernelLaunchException? BigShared(string architecture)
        {
            using var device = Open(EmulatorChecks.Limits, architecture: architecture);
            using var output = device.Allocate(DType.Float32, new TensorShape(256));
            return Launch(device, "keel_check_big_shared", new LaunchShape(new Dim3(1), new Dim3(256), 64 << 10), allowShared: 64 << 10, output.Tensor);
        }

        Assert.Null(BigShared("sm_90"));
        var error = BigShared("sm_89");
        Assert.NotNull(error);
        Assert.Contains("cannot launch on sm_89", error.Message);
        Assert.Contains("(40960 static + 65536 dynamic)", error.Message);
        Assert.Contains("99 KiB", error.Message);

        using var ampere = Open(EmulatorChecks.Limits, architecture: "sm_80");
        var function = ((EmulatedKernelRuntime)ampere.Runtime).LoadSource(Source, "keel_check_many_registers");
        using var input = DeviceData.Upload(ampere, Enumerable.Range(0, 4096).Select(i => i / 4096f).ToArray(), DType.Float32, new TensorShape(4096));
        using var sums = ampere.Allocate(DType.Float32, new TensorShape(1024));
        var tooMany = Assert.Throws<KernelLaunchException>(() => function.Launch(new LaunchShape(new Dim3(1), new Dim3(1024)), [input.Tensor, sums.Tensor]));
        Assert.Contains("registers", tooMany.Message);
        Assert.Contains("CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", tooMany.Message);
        function.Launch(new LaunchShape(new Dim3(4), new Dim3(256)), [input.Tensor, sums.Tensor]);  // the same kernel in smaller blocks fits
    }

    [Fact]
    public void AMisalignedVectorLoadTrapsWithItsAddress()
    {
        using var device = Open(EmulatorChecks.None);
        using var input = DeviceData.Upload(device, new float[256], DType.Float32, new TensorShape(256));
        using var output = device.Allocate(DType.Float32, new TensorShape(32));
        var error = Launch(device, "keel_check_vector_load", new LaunchShape(new Dim3(1), new Dim3(32)), input.Tensor, output.Tensor, 2);
        Assert.NotNull(error);
        Assert.Contains("KEEL_EMU_ERROR_MISALIGNED", error.Message);
        Assert.Contains("16-byte vector access at address 0x", error.Message);
        Assert.Null(Launch(device, "keel_check_vector_load", new LaunchShape(new Dim3(1), new Dim3(32)), input.Tensor, output.Tensor, 4));
    }

    [Fact]
    public void ChecksAreNamedInTheEnvironmentVariableOrTheError()
    {
        Assert.Equal(EmulatorChecks.Race | EmulatorChecks.Init, EmulatorChecksText.Parse(" race, INIT ", EmulatorChecksText.Variable));
        Assert.Equal(EmulatorChecks.All, EmulatorChecksText.Parse("all", EmulatorChecksText.Variable));
        Assert.Equal(EmulatorChecks.None, EmulatorChecksText.Parse("none", EmulatorChecksText.Variable));
        var error = Assert.Throws<ArgumentException>(() => EmulatorChecksText.Parse("race,speed", EmulatorChecksText.Variable));
        Assert.Contains("KEEL_EMU_CHECKS: 'speed' is not an emulator check", error.Message);
        Assert.Equal("order,race,async,init,spin,limits", EmulatorChecksText.Format(EmulatorChecks.All));
        Assert.Throws<ArgumentException>(() => new EmulatorOptions { Architecture = "sm_75" });
    }

    private static EmulatedDevice Open(EmulatorChecks checks, int workers = 2, string architecture = "sm_90") =>
        TestDevices.OpenEmulated(new EmulatorOptions(WorkerThreads: workers) { Checks = checks, Seed = 7, Architecture = architecture });

    private static KernelLaunchException? Launch(EmulatedDevice device, string kernel, LaunchShape shape, params KernelArgument[] arguments) =>
        Launch(device, kernel, shape, allowShared: 0, arguments);

    private static KernelLaunchException? Launch(EmulatedDevice device, string kernel, LaunchShape shape, int allowShared, params KernelArgument[] arguments)
    {
        var function = ((EmulatedKernelRuntime)device.Runtime).LoadSource(Source, kernel);
        if (allowShared > 0) function.AllowDynamicSharedMemory(allowShared);
        try
        {
            function.Launch(shape, arguments);
            return null;
        }
        catch (KernelLaunchException e)
        {
            return e;
        }
    }
}
