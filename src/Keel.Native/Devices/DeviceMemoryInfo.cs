namespace Keel.Native.Devices;

/// <summary>A device's own memory as its driver reports it at one moment (other processes' use included).</summary>
/// <param name="TotalBytes">All of the device's memory.</param>
/// <param name="FreeBytes">What is not in use now.</param>
public readonly record struct DeviceMemoryInfo(long TotalBytes, long FreeBytes)
{
    /// <summary>In use now: total less free.</summary>
    public long UsedBytes => TotalBytes - FreeBytes;
}
