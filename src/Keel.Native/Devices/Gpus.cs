using Keel.Cuda;
using Keel.Cuda.Driver;
using Keel.Cuda.Interop;

namespace Keel.Native.Devices;

/// <summary>Whether this machine has a GPU Keel can use.</summary>
public static class Gpus
{
    /// <summary>
    /// Null when the CUDA driver loads and reports at least one GPU; otherwise why not, in a sentence
    /// (driver library missing, driver error, no device).
    /// </summary>
    public static string? WhyNone()
    {
        if (!CudaLibraries.TryLoad(CudaLibrary.Driver, out _, out var missing))
            return $"the CUDA driver library ({string.Join(", ", CudaLibraries.SonamesOf(CudaLibrary.Driver))}) was not found in {missing!.Attempts.Count} places";
        try
        {
            CudaDriver.Initialize();
            return CudaDriver.DeviceCount > 0 ? null : "the CUDA driver reports no device";
        }
        catch (CudaException e)
        {
            return e.Message;
        }
    }
}
