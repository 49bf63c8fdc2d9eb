using Keel.Native.Devices.Cpu;
using Keel.Native.Devices.Cuda;
using Keel.Native.Devices.Emulated;

namespace Keel.Native.Devices;

/// <summary>Which device a run asks for.</summary>
public enum DeviceChoice
{
    /// <summary>The GPU when the CUDA driver reports one, else the CPU.</summary>
    Auto,

    /// <summary>The C# reference ops on the CPU.</summary>
    Cpu,

    /// <summary>A GPU: 0, or a data-parallel rank's local rank.</summary>
    Cuda,

    /// <summary>The CUDA kernels run by the CPU emulator.</summary>
    Emulated,
}

/// <summary>Opens the device a run asks for.</summary>
/// <example>
/// <code>
/// using var device = TrainingDevices.Open(DeviceChoice.Auto, Console.Out);   // the GPU, or the CPU with a notice
/// </code>
/// </example>
public static class TrainingDevices
{
    /// <summary>
    /// Opens <paramref name="choice"/>. <see cref="DeviceChoice.Auto"/> opens GPU <paramref name="gpu"/> when there is a
    /// GPU, and otherwise writes a one-line notice saying why not to <paramref name="notices"/> and opens the CPU device.
    /// </summary>
    /// <param name="choice">The device kind.</param>
    /// <param name="notices">Where auto says why it fell back to the CPU; may be null.</param>
    /// <param name="gpu">The GPU's ordinal (a data-parallel rank's local rank).</param>
    public static IDevice Open(DeviceChoice choice, TextWriter? notices = null, int gpu = 0)
    {
        switch (choice)
        {
            case DeviceChoice.Cpu: return new CpuDevice();
            case DeviceChoice.Cuda: return CudaDevice.Open(gpu);
            case DeviceChoice.Emulated: return EmulatedDevice.Open();
            case DeviceChoice.Auto:
                if (Gpus.WhyNone() is not { } reason) return CudaDevice.Open(gpu);
                notices?.WriteLine($"No GPU ({reason}); using the CPU device.");
                return new CpuDevice();
            default:
                throw new ArgumentOutOfRangeException(nameof(choice), choice, "Unknown device.");
        }
    }

    /// <summary>The memory a run on <paramref name="device"/> may plan for: its own memory (a GPU's), else the memory available to this process.</summary>
    public static long MemoryBytes(IDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        return device.QueryMemory()?.TotalBytes ?? GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
    }
}
