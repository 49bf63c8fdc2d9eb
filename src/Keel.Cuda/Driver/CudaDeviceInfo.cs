using System.Text;

namespace Keel.Cuda.Driver;

/// <summary>What Keel needs to know about one CUDA device: identity, architecture and the limits kernels are sized by.</summary>
/// <param name="Ordinal">The device's index among the devices the driver sees.</param>
/// <param name="Name">The marketing name, for example "NVIDIA H100 80GB HBM3".</param>
/// <param name="ComputeCapabilityMajor">Compute capability major version (9 for Hopper).</param>
/// <param name="ComputeCapabilityMinor">Compute capability minor version.</param>
/// <param name="MultiprocessorCount">Number of streaming multiprocessors (SMs).</param>
/// <param name="TotalGlobalMemoryBytes">Device memory in bytes.</param>
/// <param name="L2CacheBytes">L2 cache size in bytes.</param>
/// <param name="MaxSharedMemoryPerBlockOptInBytes">Largest shared memory a block may use after opting in with <see cref="CudaFunction.SetMaxDynamicSharedMemory"/>.</param>
/// <param name="MaxSharedMemoryPerMultiprocessorBytes">Shared memory available to all blocks resident on one SM.</param>
/// <param name="MaxThreadsPerBlock">Largest number of threads in one block.</param>
/// <param name="ClockRateKHz">Typical SM clock in kHz, as the driver reports it.</param>
/// <param name="MemoryClockRateKHz">Peak memory clock in kHz, as the driver reports it.</param>
/// <param name="MemoryBusWidthBits">Global memory bus width in bits.</param>
public sealed record CudaDeviceInfo(
    int Ordinal,
    string Name,
    int ComputeCapabilityMajor,
    int ComputeCapabilityMinor,
    int MultiprocessorCount,
    long TotalGlobalMemoryBytes,
    int L2CacheBytes,
    int MaxSharedMemoryPerBlockOptInBytes,
    int MaxSharedMemoryPerMultiprocessorBytes,
    int MaxThreadsPerBlock,
    int ClockRateKHz,
    int MemoryClockRateKHz,
    int MemoryBusWidthBits)
{
    /// <summary>The exact architecture name NVRTC compiles for, for example <c>sm_90</c>.</summary>
    public string Architecture => $"sm_{ComputeCapabilityMajor}{ComputeCapabilityMinor}";

    /// <summary>Reads the properties of device <paramref name="ordinal"/>, initializing the driver if needed.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="ordinal"/> is negative or not below <see cref="CudaDriver.DeviceCount"/>.</exception>
    /// <exception cref="Interop.CudaLibraryNotFoundException">The driver library is missing.</exception>
    public static unsafe CudaDeviceInfo Query(int ordinal)
    {
        var device = CudaDriver.DeviceOf(ordinal, nameof(ordinal));

        const int nameCapacity = 256;
        var nameBytes = stackalloc byte[nameCapacity];
        CudaDriverNative.Check(CudaDriverNative.cuDeviceGetName(nameBytes, nameCapacity, device), "cuDeviceGetName");
        var nameSpan = new ReadOnlySpan<byte>(nameBytes, nameCapacity);
        var nameLength = nameSpan.IndexOf((byte)0);
        var name = Encoding.UTF8.GetString(nameLength < 0 ? nameSpan : nameSpan[..nameLength]);

        CudaDriverNative.Check(CudaDriverNative.cuDeviceTotalMem(out var totalBytes, device), "cuDeviceTotalMem");

        int Attribute(int attribute)
        {
            CudaDriverNative.Check(CudaDriverNative.cuDeviceGetAttribute(out var value, attribute, device), "cuDeviceGetAttribute");
            return value;
        }

        return new CudaDeviceInfo(
            ordinal,
            name,
            Attribute(DeviceAttribute.ComputeCapabilityMajor),
            Attribute(DeviceAttribute.ComputeCapabilityMinor),
            Attribute(DeviceAttribute.MultiprocessorCount),
            (long)totalBytes,
            Attribute(DeviceAttribute.L2CacheSize),
            Attribute(DeviceAttribute.MaxSharedMemoryPerBlockOptIn),
            Attribute(DeviceAttribute.MaxSharedMemoryPerMultiprocessor),
            Attribute(DeviceAttribute.MaxThreadsPerBlock),
            Attribute(DeviceAttribute.ClockRate),
            Attribute(DeviceAttribute.MemoryClockRate),
            Attribute(DeviceAttribute.GlobalMemoryBusWidth));
    }
}
