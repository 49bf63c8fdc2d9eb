namespace Keel.Native.Tests.Cuda;

/// <summary>The tests that need a GPU run one at a time in this collection: they share one device and its memory.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class CudaDeviceCollection
{
    /// <summary>The collection's name.</summary>
    public const string Name = "CUDA device";
}

/// <summary>Opens device 0 for a GPU test, or skips the test saying why there is no device.</summary>
internal static class CudaTestDevice
{
    /// <summary>Retains device 0's primary context (current on this thread); skips when the driver or a device is missing.</summary>
    public static CudaContext OpenOrSkip()
    {
        if (!CudaLibraries.TryLoad(CudaLibrary.Driver, out _, out var missing))
            Assert.Skip($"no CUDA device: the {CudaLibraries.Describe(CudaLibrary.Driver)} was not found ({missing!.Attempts.Count} places tried)");
        try
        {
            CudaDriver.Initialize();
        }
        catch (CudaException e)
        {
            Assert.Skip("no CUDA device: " + e.Message);
        }
        if (CudaDriver.DeviceCount == 0) Assert.Skip("no CUDA device: the driver reports none");
        return CudaContext.RetainPrimary(0);
    }
}
