using System.Runtime.InteropServices;

namespace Keel.Native.Tests.Cuda;

public sealed class CudaLibraryProbeTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("keel-cuda-probe-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public void MissReportsEveryFolderTriedAndWhy()
    {
        var empty = Directory.CreateDirectory(Path.Combine(_root, "empty")).FullName;
        var absent = Path.Combine(_root, "absent");

        var result = CudaLibraries.Probe(CudaLibrary.Nvrtc, [empty, absent], useSystemLoader: false, driver: null);

        Assert.Equal(IntPtr.Zero, result.Handle);
        var error = Assert.IsType<CudaLibraryNotFoundException>(result.Error);
        Assert.Equal(CudaLibrary.Nvrtc, error.Library);
        Assert.Equal(2, error.Attempts.Count);
        Assert.Contains($"{empty}: none of libnvrtc.so.13, libnvrtc.so.12, libnvrtc.so.11.2, libnvrtc.so", error.Message);
        Assert.Contains($"{absent}: no such folder", error.Message);
        Assert.Contains("KEEL_CUDA_LIBRARY_PATH", error.Message);
    }

    [Fact]
    public void CandidateThatIsNotALibraryIsReportedWithTheLoadersReason()
    {
        var folder = Directory.CreateDirectory(Path.Combine(_root, "broken")).FullName;
        var fake = Path.Combine(folder, "libcublasLt.so.12");
        File.WriteAllText(fake, "not an ELF file");

        var result = CudaLibraries.Probe(CudaLibrary.CublasLt, [folder], useSystemLoader: false, driver: null);

        Assert.Equal(IntPtr.Zero, result.Handle);
        Assert.Contains(result.Error!.Attempts, a => a.StartsWith(fake + ": ", StringComparison.Ordinal) && a.Contains("load"));
    }

    [Fact]
    public void LibraryUnderAProbedSonameIsLoadedFromThatFolder()
    {
        var installed = InstalledNvrtcOrSkip();
        var empty = Directory.CreateDirectory(Path.Combine(_root, "first")).FullName;
        var folder = Directory.CreateDirectory(Path.Combine(_root, "second")).FullName;
        // Any probed name other than the installed file's own, so the match must come from this folder.
        var soname = CudaLibraries.SonamesOf(CudaLibrary.Nvrtc).First(n => n != Path.GetFileName(installed));
        var link = Path.Combine(folder, soname);
        File.CreateSymbolicLink(link, installed);

        var result = CudaLibraries.Probe(CudaLibrary.Nvrtc, [empty, folder], useSystemLoader: false, driver: null);

        Assert.Null(result.Error);
        Assert.Equal(link, result.Path);
        Assert.True(NativeLibrary.TryGetExport(result.Handle, "nvrtcVersion", out _));
    }

    [Fact]
    public void ProbePassesOverWhatTheDriverCannotRunAndSaysWhy()
    {
        var installed = InstalledNvrtcOrSkip();
        var folder = Directory.CreateDirectory(Path.Combine(_root, "both")).FullName;
        var newer = Path.Combine(folder, "libnvrtc.so.13");
        var older = Path.Combine(folder, "libnvrtc.so.12");
        File.CreateSymbolicLink(newer, installed);
        File.CreateSymbolicLink(older, installed);

        var underTwelve = CudaLibraries.Probe(CudaLibrary.Nvrtc, [folder], useSystemLoader: false, CudaDriverSupport.Of(new Version(12, 4)));
        var underThirteen = CudaLibraries.Probe(CudaLibrary.Nvrtc, [folder], useSystemLoader: false, CudaDriverSupport.Of(new Version(13, 0)));

        Assert.Equal(older, underTwelve.Path);
        Assert.Equal([$"{newer}: a CUDA 13 library, and the driver supports CUDA 12.4"], underTwelve.Skipped);
        Assert.Equal(newer, underThirteen.Path);
        Assert.Empty(underThirteen.Skipped);
    }

    [Fact]
    public void MissBecauseEveryLibraryIsTooNewNamesTheDriversVersion()
    {
        var folder = Directory.CreateDirectory(Path.Combine(_root, "newer")).FullName;
        File.WriteAllText(Path.Combine(folder, "libcublasLt.so.13"), "never loaded: the driver cannot run it");

        var result = CudaLibraries.Probe(CudaLibrary.CublasLt, [folder], useSystemLoader: false, CudaDriverSupport.Of(new Version(12, 2)));

        Assert.Equal(IntPtr.Zero, result.Handle);
        Assert.Contains("libcublasLt.so.13: a CUDA 13 library, and the driver supports CUDA 12.2: passed over", result.Error!.Message);
        Assert.Contains("the driver supports CUDA 12.2, so libraries of CUDA 12 and older are used", result.Error.Message);
    }

    [Fact]
    public void InitializingWithoutTheDriverLibraryThrowsWithEveryPlaceTried()
    {
        if (CudaLibraries.TryLoad(CudaLibrary.Driver, out var path, out _))
        {
            // A machine with a driver: initialization must get past the loader.
            var e = Record.Exception(CudaDriver.Initialize);
            Assert.False(e is CudaLibraryNotFoundException, $"libcuda was found at {path} but Initialize reported it missing");
            return;
        }

        var error = Assert.Throws<CudaLibraryNotFoundException>(CudaDriver.Initialize);

        Assert.Equal(CudaLibrary.Driver, error.Library);
        Assert.Contains("libcuda.so.1", error.Message);
        foreach (var folder in CudaLibraries.SearchFolders()) Assert.Contains(folder, error.Message);
        Assert.Contains("libcuda.so.1: not found by the system loader", error.Message);
    }

    /// <summary>The path of the NVRTC this machine has, to link to under other names; skips (or fails under KEEL_REQUIRE_NVRTC=1) without one.</summary>
    private static string InstalledNvrtcOrSkip()
    {
        if (CudaLibraries.TryLoad(CudaLibrary.Nvrtc, out var installed, out var error)) return installed;
        var reason = "NVRTC is not available to link to: " + error!.Message.Split(Environment.NewLine)[0];
        if (Environment.GetEnvironmentVariable("KEEL_REQUIRE_NVRTC") == "1") Assert.Fail(reason + " (KEEL_REQUIRE_NVRTC=1)");
        Assert.Skip(reason);
        return "";
    }
}
