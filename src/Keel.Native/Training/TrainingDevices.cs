using Keel.Cuda;
using Keel.Cuda.Driver;
using Keel.Cuda.Interop;
using Keel.Native.Devices;
using Keel.Native.Devices.Cpu;
using Keel.Native.Devices.Cuda;
using Keel.Native.Devices.Emulated;

namespace Keel.Native.Training;

/// <summary>Which device a run asks for.</summary>
public enum DeviceChoice
{
    /// <summary>The GPU when the CUDA driver reports one, else the CPU.</summary>
    Auto,

    /// <summary>The C# reference ops on the CPU.</summary>
    Cpu,

    /// <summary>GPU 0.</summary>
    Cuda,

    /// <summary>The CUDA kernels run by the CPU emulator.</summary>
    Emulated,
}

/// <summary>Opens the device a run asks for.</summary>
public static class TrainingDevices
{
    /// <summary>Opens <paramref name="choice"/>; <see cref="DeviceChoice.Auto"/> falls back to the CPU when there is no usable GPU.</summary>
    public static IDevice Open(DeviceChoice choice) => choice switch
    {
        DeviceChoice.Cpu => new CpuDevice(),
        DeviceChoice.Cuda => CudaDevice.Open(),
        DeviceChoice.Emulated => EmulatedDevice.Open(),
        DeviceChoice.Auto => HasGpu() ? CudaDevice.Open() : new CpuDevice(),
        _ => throw new ArgumentOutOfRangeException(nameof(choice), choice, "Unknown device."),
    };

    /// <summary>True when the CUDA driver loads and reports at least one GPU.</summary>
    public static bool HasGpu()
    {
        if (!CudaLibraries.TryLoad(CudaLibrary.Driver, out _, out _)) return false;
        try
        {
            CudaDriver.Initialize();
            return CudaDriver.DeviceCount > 0;
        }
        catch (CudaException)
        {
            return false;
        }
    }

}
