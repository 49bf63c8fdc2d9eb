namespace Keel.Native.Tests.Cuda;

/// <summary>The resolver's choice of library versions as a function of the driver: no GPU, no library needed.</summary>
public sealed class CudaLibraryChoiceTests
{
    private static readonly LibraryCandidate[] Found =
    [
        new("/opt/a/libnvrtc.so.13", new CudaSoname("libnvrtc.so.13", 13)),
        new("/opt/a/libnvrtc.so.12", new CudaSoname("libnvrtc.so.12", 12)),
        new("/opt/b/libnvrtc.so.11.2", new CudaSoname("libnvrtc.so.11.2", 11)),
        new("/opt/b/libnvrtc.so", new CudaSoname("libnvrtc.so")),
        new("libnvrtc.so.13", new CudaSoname("libnvrtc.so.13", 13), BySystemLoader: true),
        new("libnvrtc.so.12", new CudaSoname("libnvrtc.so.12", 12), BySystemLoader: true),
    ];

    [Fact]
    public void CudaTwelveDriverPassesOverCudaThirteenLibrariesAndKeepsTheSearchOrder()
    {
        var (usable, skipped) = CudaLibraryChoice.Choose(Found, CudaDriverSupport.Of(new Version(12, 4)));

        Assert.Equal(["/opt/a/libnvrtc.so.12", "/opt/b/libnvrtc.so.11.2", "/opt/b/libnvrtc.so", "libnvrtc.so.12"],
                     usable.Select(c => c.Location));
        // The system loader's libnvrtc.so.13 is not reported: nothing says the loader has one.
        Assert.Equal(["/opt/a/libnvrtc.so.13: a CUDA 13 library, and the driver supports CUDA 12.4"], skipped);
    }

    [Fact]
    public void CudaThirteenDriverRunsEveryVersionNewestFirst()
    {
        var (usable, skipped) = CudaLibraryChoice.Choose(Found, CudaDriverSupport.Of(new Version(13, 0)));

        Assert.Equal(Found, usable);
        Assert.Empty(skipped);
    }

    [Fact]
    public void CudaElevenDriverKeepsOnlyCudaElevenAndNamesWithoutAVersion()
    {
        var (usable, skipped) = CudaLibraryChoice.Choose(Found, CudaDriverSupport.Of(new Version(11, 8)));

        Assert.Equal(["/opt/b/libnvrtc.so.11.2", "/opt/b/libnvrtc.so"], usable.Select(c => c.Location));
        Assert.Equal(["/opt/a/libnvrtc.so.13: a CUDA 13 library, and the driver supports CUDA 11.8",
                      "/opt/a/libnvrtc.so.12: a CUDA 12 library, and the driver supports CUDA 11.8"], skipped);
    }

    [Fact]
    public void WithoutADriverNothingIsRuledOut()
    {
        var none = CudaDriverSupport.None("no CUDA driver");

        var (usable, skipped) = CudaLibraryChoice.Choose(Found, none);

        Assert.Equal(Found, usable);
        Assert.Empty(skipped);
        Assert.Null(none.CudaVersion);
        Assert.StartsWith("no CUDA driver, so no version is ruled out", none.Basis);
    }

    [Fact]
    public void LibrariesNotVersionedWithCudaAreNeverRuledOut()
    {
        // NCCL's soname counts NCCL's own versions, not CUDA's.
        LibraryCandidate[] found = [new("/opt/c/libnccl.so.2", new CudaSoname("libnccl.so.2"))];

        var (usable, skipped) = CudaLibraryChoice.Choose(found, CudaDriverSupport.Of(new Version(11, 8)));

        Assert.Equal(found, usable);
        Assert.Empty(skipped);
    }
}
