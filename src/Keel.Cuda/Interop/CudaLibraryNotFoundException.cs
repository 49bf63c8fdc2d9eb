namespace Keel.Cuda.Interop;

/// <summary>
/// A CUDA library could not be loaded. The message names the library, every file name and folder that was
/// tried, and the loader's reason for each candidate that existed but failed to load.
/// </summary>
public sealed class CudaLibraryNotFoundException : DllNotFoundException
{
    /// <summary>Creates the exception for <paramref name="library"/> with the probe report.</summary>
    public CudaLibraryNotFoundException(CudaLibrary library, IReadOnlyList<string> attempts)
        : base(FormatMessage(library, attempts))
    {
        Library = library;
        Attempts = attempts;
    }

    /// <summary>The library that was looked for.</summary>
    public CudaLibrary Library { get; }

    /// <summary>Each candidate path or soname that was tried, with the reason it was not used.</summary>
    public IReadOnlyList<string> Attempts { get; }

    private static string FormatMessage(CudaLibrary library, IReadOnlyList<string> attempts) =>
        $"{CudaLibraries.Describe(library)} was not found. Set KEEL_CUDA_LIBRARY_PATH to the folder that holds it. Tried:"
        + Environment.NewLine + string.Join(Environment.NewLine, attempts.Select(a => "  " + a));
}
