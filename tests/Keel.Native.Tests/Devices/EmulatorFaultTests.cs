namespace Keel.Native.Tests.Devices;

/// <summary>
/// Faults planted in kernels (Devices/emulator_faults.cu) are caught by the emulated device with a message
/// that names the kernel and the threads, the host process survives, and the next launch works.
/// </summary>
public class EmulatorFaultTests
{
    private static readonly string Source = Path.Combine(AppContext.BaseDirectory, "Devices", "emulator_faults.cu");

    [Fact]
    public void BarrierNotReachedByEveryThreadIsReportedWithThreadIds()
    {
        var error = Launch("keel_fault_early_return", grid: 1, block: 256);
        Assert.Contains("keel_fault_early_return", error.Message);
        Assert.Contains("0-127", error.Message);
        Assert.Contains("128-255", error.Message);
        Assert.Contains("exited", error.Message);
        LaunchStillWorks();
    }

    [Fact]
    public void WriteOnePastTheEndOfABufferIsCaught()
    {
        var error = Launch("keel_fault_write_past_end", grid: 1, block: 1, n: 1000);
        Assert.Contains("keel_fault_write_past_end", error.Message);
        Assert.Contains("MEMORY_FAULT", error.Message);
        LaunchStillWorks();
    }

    [Fact]
    public void StaticSharedIndexPastItsBoundIsCaught()
    {
        var error = Launch("keel_fault_shared_past_end", grid: 1, block: 32, n: 40);
        Assert.Contains("BOUNDS", error.Message);
        LaunchStillWorks();
    }

    [Fact]
    public void ShuffleWhoseMaskNamesExitedLanesIsCaught()
    {
        var error = Launch("keel_fault_shuffle_after_exit", grid: 1, block: 32);
        Assert.Contains("WARP_COLLECTIVE", error.Message);
        Assert.Contains("keel_fault_shuffle_after_exit", error.Message);
        LaunchStillWorks();
    }

    [Fact]
    public void DynamicSharedMemoryAbove48KiBNeedsTheOptInAsOnAGpu()
    {
        var device = (EmulatedDevice)TestDevices.Get(DeviceKind.Emulated);
        var function = ((EmulatedKernelRuntime)device.Runtime).LoadSource(Source, "keel_fault_none");
        var n = 300;
        using var buffer = DeviceData.Poisoned(device, DType.Float32, new TensorShape(n));
        var shape = new LaunchShape(new Dim3(3), new Dim3(128), 64 << 10);

        var error = Assert.Throws<KernelLaunchException>(() => function.Launch(shape, [buffer.Tensor, n]));
        Assert.Contains("AllowDynamicSharedMemory", error.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => function.AllowDynamicSharedMemory(228 << 10));
        function.AllowDynamicSharedMemory(64 << 10);
        function.Launch(shape, [buffer.Tensor, n]);
        Assert.Equal(Enumerable.Range(0, n).Select(i => (float)i), DeviceData.Download(device, buffer));
    }

    /// <summary>Launches <paramref name="kernel"/> on a buffer, and <paramref name="n"/> when the kernel takes it.</summary>
    private static KernelLaunchException Launch(string kernel, int grid, int block, int? n = null)
    {
        var device = (EmulatedDevice)TestDevices.Get(DeviceKind.Emulated);
        var function = ((EmulatedKernelRuntime)device.Runtime).LoadSource(Source, kernel);
        using var buffer = device.Allocate(DType.Float32, new TensorShape(Math.Max(n ?? 0, block * grid)));
        var shape = new LaunchShape(new Dim3(grid), new Dim3(block));
        return Assert.Throws<KernelLaunchException>(() =>
        {
            if (n is { } value) function.Launch(shape, [buffer.Tensor, value]);
            else function.Launch(shape, [buffer.Tensor]);
        });
    }

    private static void LaunchStillWorks()
    {
        var device = (EmulatedDevice)TestDevices.Get(DeviceKind.Emulated);
        var function = ((EmulatedKernelRuntime)device.Runtime).LoadSource(Source, "keel_fault_none");
        var n = 300;
        using var buffer = DeviceData.Poisoned(device, DType.Float32, new TensorShape(n));
        function.Launch(new LaunchShape(new Dim3(3), new Dim3(128)), [buffer.Tensor, n]);
        Assert.Equal(Enumerable.Range(0, n).Select(i => (float)i), DeviceData.Download(device, buffer));
    }
}
