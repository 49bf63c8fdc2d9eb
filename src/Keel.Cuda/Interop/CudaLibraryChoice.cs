namespace Keel.Cuda.Interop;

/// <summary>
/// A file name the resolver tries for a library, with the CUDA major version it belongs to: 13 for
/// <c>libnvrtc.so.13</c>, 11 for <c>libnvrtc.so.11.2</c>; null where the name does not say (an unversioned
/// development link) or the library is not versioned with CUDA (the driver itself).
/// </summary>
/// <param name="Name">The file name (soname).</param>
/// <param name="CudaMajor">The CUDA major version of the toolkit the file comes from, when its name says.</param>
internal readonly record struct CudaSoname(string Name, int? CudaMajor = null);

/// <summary>One place a library was found: a file in a search folder, or a soname the system loader knows.</summary>
/// <param name="Location">The file's path, or the soname itself when <paramref name="BySystemLoader"/>.</param>
/// <param name="Soname">The name it was found under.</param>
/// <param name="BySystemLoader">True when the system loader is to find it by soname (its path is known only once loaded).</param>
internal readonly record struct LibraryCandidate(string Location, CudaSoname Soname, bool BySystemLoader = false);

/// <summary>
/// What the installed driver allows: the newest CUDA version it supports (<c>cuDriverGetVersion</c>), or null when
/// there is no usable driver, with the sentence that says so for reports.
/// </summary>
/// <param name="CudaVersion">The newest CUDA version the driver supports, for example 12.4; null without a driver.</param>
/// <param name="Basis">How libraries are chosen under this driver, for <c>keel info</c> and error reports.</param>
public sealed record CudaDriverSupport(Version? CudaVersion, string Basis)
{
    /// <summary>A driver that supports CUDA <paramref name="cudaVersion"/>.</summary>
    public static CudaDriverSupport Of(Version cudaVersion) =>
        new(cudaVersion, $"the driver supports CUDA {cudaVersion.Major}.{cudaVersion.Minor}, so libraries of CUDA {cudaVersion.Major} and older are used");

    /// <summary>No usable driver (<paramref name="why"/>): no library is ruled out, and each is tried newest first.</summary>
    public static CudaDriverSupport None(string why) =>
        new(null, $"{why}, so no version is ruled out and the newest is used (enough to compile kernels; running them needs a driver of that CUDA version or newer)");
}

/// <summary>
/// The resolver's choice among the places a library was found, as a pure function of what was found and what the driver
/// supports, so that it can be tested without a GPU. A driver runs libraries (and the CUBINs an NVRTC writes) of its own
/// CUDA major version and older, never newer: a CUDA 12 driver cannot run cuBLAS 13 or NVRTC 13's CUBINs. Minor versions
/// do not matter (CUDA's minor-version compatibility).
/// </summary>
internal static class CudaLibraryChoice
{
    /// <summary>
    /// The candidates <paramref name="driver"/> can use, in the order given (search-folder priority, then newest CUDA
    /// first within a folder), and the files passed over, each as "path: reason". Without a driver nothing is passed
    /// over. A name that does not say its CUDA version is kept. A soname left to the system loader is passed over
    /// without a report: whether the loader has it is not known without loading it.
    /// </summary>
    public static (IReadOnlyList<LibraryCandidate> Usable, IReadOnlyList<string> Skipped) Choose(IReadOnlyList<LibraryCandidate> found,
                                                                                                 CudaDriverSupport driver)
    {
        var usable = new List<LibraryCandidate>();
        var skipped = new List<string>();
        foreach (var candidate in found)
        {
            if (driver.CudaVersion is not { } supported || candidate.Soname.CudaMajor is not { } major || major <= supported.Major)
                usable.Add(candidate);
            else if (!candidate.BySystemLoader)
                skipped.Add($"{candidate.Location}: a CUDA {major} library, and the driver supports CUDA {supported.Major}.{supported.Minor}");
        }
        return (usable, skipped);
    }
}
