using Keel.Native.Devices.Cuda;

namespace Keel.Native.Tests.Support;

/// <summary>
/// The devices tests run on, opened on first use. The kernel devices run their kernels against the CPU device's
/// reference ops; the CUDA device skips, with the reason, where there is no GPU. A kernel device is not for two
/// threads at once (its launchers keep scratch buffers, and errors recorded on the device are reported at its next
/// synchronization), and test classes run in parallel, so each test thread gets a device of its own.
/// </summary>
internal static class TestDevices
{
    private static readonly Lazy<CpuDevice> Cpu = new(() => new CpuDevice());
    private static readonly ThreadLocal<(EmulatedDevice? Device, string? Reason)> Emulated = new(OpenShared);
    private static readonly ThreadLocal<(CudaDevice? Device, string? Reason)> Cuda = new(OpenCuda);

    /// <summary>The kernel devices a kernel test runs on: the emulator always, the GPU where there is one.</summary>
    public static TheoryData<DeviceKind> KernelDevices => [DeviceKind.Emulated, DeviceKind.Cuda];

    public static CpuDevice Reference => Cpu.Value;

    /// <summary>The shared device of <paramref name="kind"/>; skips the test for CUDA without a GPU.</summary>
    public static IDevice Get(DeviceKind kind) => kind switch
    {
        DeviceKind.Cpu => Cpu.Value,
        DeviceKind.Emulated => Emulated.Value.Device ?? SkipEmulated(),
        DeviceKind.Cuda => Cuda.Value.Device ?? SkipCuda(),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    /// <summary>
    /// A new emulated device with <paramref name="options"/> (checking modes, seed, architecture), for the caller to
    /// dispose; skips like <see cref="Get"/> where the emulator cannot open.
    /// </summary>
    public static EmulatedDevice OpenEmulated(EmulatorOptions options)
    {
        if (Emulated.Value.Device is null) SkipEmulated();
        return EmulatedDevice.Open(options);
    }

    private static CudaDevice SkipCuda()
    {
        Assert.Skip("no CUDA device: " + Cuda.Value.Reason);
        return null!;
    }

    /// <summary>
    /// The emulator needs a host C++ compiler. Where there is none its tests skip, unless
    /// <c>KEEL_REQUIRE_EMULATOR=1</c> (as CI sets) makes that a failure, so the emulation tier cannot pass by skipping.
    /// </summary>
    private static EmulatedDevice SkipEmulated()
    {
        var reason = "no emulated device: " + Emulated.Value.Reason;
        if (Environment.GetEnvironmentVariable("KEEL_REQUIRE_EMULATOR") == "1") Assert.Fail(reason + " (KEEL_REQUIRE_EMULATOR=1)");
        Assert.Skip(reason);
        return null!;
    }

    private static (EmulatedDevice?, string?) OpenShared()
    {
        try
        {
            return (EmulatedDevice.Open(), null);
        }
        catch (InvalidOperationException e)
        {
            return (null, e.Message);
        }
    }

    private static (CudaDevice?, string?) OpenCuda() =>
        Gpus.WhyNone() is { } reason ? (null, reason) : (CudaDevice.Open(), null);
}
