using Keel.Cuda.Interop;

namespace Keel.Cuda.Driver;

/// <summary>The CUDA driver as a whole: initialization, its version and the devices it sees.</summary>
public static class CudaDriver
{
    private static readonly Lock Gate = new();
    private static volatile bool _initialized;
    private static bool _noDevice;

    /// <summary>
    /// Loads the driver library and initializes the driver (<c>cuInit</c>). Idempotent and thread-safe; call it
    /// before anything else in <c>Keel.Cuda.Driver</c>. A machine whose driver reports no device initializes
    /// successfully with <see cref="DeviceCount"/> = 0.
    /// </summary>
    /// <exception cref="CudaLibraryNotFoundException"><c>libcuda.so.1</c> is not installed where Keel looks.</exception>
    /// <exception cref="CudaException">The driver failed to initialize (for example a driver older than the toolkit's minimum).</exception>
    public static void Initialize()
    {
        if (_initialized) return;
        lock (Gate)
        {
            if (_initialized) return;
            CudaLibraries.Require(CudaLibrary.Driver);
            var status = CudaDriverNative.cuInit(0);
            if (status == CudaDriverNative.CUDA_ERROR_NO_DEVICE) _noDevice = true;
            else CudaDriverNative.Check(status, "cuInit");
            _initialized = true;
        }
    }

    /// <summary>The newest CUDA version the installed driver supports, for example 12.4.</summary>
    /// <exception cref="CudaLibraryNotFoundException">The driver library is missing.</exception>
    public static Version Version
    {
        get
        {
            Initialize();
            CudaDriverNative.Check(CudaDriverNative.cuDriverGetVersion(out var version), "cuDriverGetVersion");
            // Encoded as 1000 * major + 10 * minor (cuda.h, cuDriverGetVersion).
            return new Version(version / 1000, version % 1000 / 10);
        }
    }

    /// <summary>The number of CUDA devices the driver sees; 0 when it reports none.</summary>
    /// <exception cref="CudaLibraryNotFoundException">The driver library is missing.</exception>
    public static int DeviceCount
    {
        get
        {
            Initialize();
            if (_noDevice) return 0;
            CudaDriverNative.Check(CudaDriverNative.cuDeviceGetCount(out var count), "cuDeviceGetCount");
            return count;
        }
    }

    /// <summary>
    /// The driver's <c>CUdevice</c> for <paramref name="ordinal"/>. A negative ordinal is refused before the driver
    /// is touched; one past the last device after <see cref="DeviceCount"/> says how many there are.
    /// </summary>
    internal static int DeviceOf(int ordinal, string paramName)
    {
        if (ordinal < 0) throw new ArgumentOutOfRangeException(paramName, ordinal, "a device ordinal is 0 or more.");
        var count = DeviceCount;
        if (ordinal >= count)
            throw new ArgumentOutOfRangeException(paramName, ordinal, $"the driver sees {count} CUDA device(s).");
        CudaDriverNative.Check(CudaDriverNative.cuDeviceGet(out var device, ordinal), "cuDeviceGet");
        return device;
    }
}
