using System.Collections.Concurrent;
using System.Globalization;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Keel.Cuda.Driver;

namespace Keel.Cuda.Interop;

/// <summary>
/// Finds and loads the CUDA libraries. Each binding declares a logical library name (<c>"cuda"</c>,
/// <c>"nvrtc"</c>, <c>"cublas"</c>, <c>"cublasLt"</c>, <c>"nccl"</c>); this resolver maps it to a versioned soname found in
/// the search places, in this order:
/// <list type="number">
/// <item><c>KEEL_CUDA_LIBRARY_PATH</c> (a <c>:</c>-separated list of folders);</item>
/// <item><c>LD_LIBRARY_PATH</c>;</item>
/// <item><c>CUDA_PATH</c>'s <c>lib64</c> and <c>lib</c>;</item>
/// <item><c>/usr/local/cuda*/lib64</c>, newest first;</item>
/// <item>the NVIDIA Python wheels' <c>site-packages/nvidia/*/lib</c> of the active virtual or conda
/// environment, the user's and the system's Python;</item>
/// <item>the system loader's own search (<c>ld.so.cache</c>) by soname.</item>
/// </list>
/// Within each place the sonames are tried newest CUDA first (13, 12, 11). A library of a newer CUDA than the installed
/// driver supports (<c>cuDriverGetVersion</c>) is passed over, since that driver cannot run it (see
/// <see cref="CudaLibraryChoice"/>); without a driver every version is a candidate. <see cref="Choice"/> says what was
/// chosen and why. A miss raises <see cref="CudaLibraryNotFoundException"/> listing every candidate tried.
/// </summary>
public static class CudaLibraries
{
    private static readonly ConcurrentDictionary<CudaLibrary, Lazy<LoadResult>> Results = new();
    private static readonly Lazy<CudaDriverSupport> Support = new(ProbeDriverSupport);

    /// <summary>The logical names the bindings use in <c>[LibraryImport]</c>.</summary>
    internal const string DriverName = "cuda", NvrtcName = "nvrtc", CublasName = "cublas", CublasLtName = "cublasLt", NcclName = "nccl";

    /// <summary>
    /// Every library the resolver knows, one row each: its import name, an export that identifies it, the sonames to try
    /// (newest CUDA first) and a library to load before it. A new binding adds a <see cref="CudaLibrary"/> member and a row.
    /// </summary>
    private static readonly LibraryEntry[] Table =
    [
        new(CudaLibrary.Driver, DriverName, "cuInit", [new("libcuda.so.1"), new("libcuda.so")]),
        new(CudaLibrary.Nvrtc, NvrtcName, "nvrtcVersion", CudaVersioned("libnvrtc.so", "13", "12", "11.2")),
        // libcublas needs libcublasLt. Loading it first, from wherever it is found, satisfies that dependency by soname
        // even when the folder is known only to KEEL_CUDA_LIBRARY_PATH and not to the system loader.
        new(CudaLibrary.Cublas, CublasName, "cublasCreate_v2", CudaVersioned("libcublas.so", "13", "12", "11"), LoadFirst: CudaLibrary.CublasLt),
        new(CudaLibrary.CublasLt, CublasLtName, "cublasLtCreate", CudaVersioned("libcublasLt.so", "13", "12", "11")),
        // NCCL keeps one soname across CUDA versions, so there is no CUDA major to match against the driver.
        new(CudaLibrary.Nccl, NcclName, "ncclGetVersion", [new("libnccl.so.2"), new("libnccl.so")]),
    ];

    // The resolver must be in place before the first P/Invoke of this assembly runs, whoever calls it first.
    [ModuleInitializer]
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2255", Justification = "Registers this assembly's own import resolver.")]
    internal static void RegisterResolver() =>
        NativeLibrary.SetDllImportResolver(typeof(CudaLibraries).Assembly, ResolveImport);

    /// <summary>The sonames tried for <paramref name="library"/>, newest CUDA first.</summary>
    public static IReadOnlyList<string> SonamesOf(CudaLibrary library) => Entry(library).Sonames.Select(s => s.Name).ToList();

    /// <summary>A human name for <paramref name="library"/> with its sonames, for messages.</summary>
    public static string Describe(CudaLibrary library) =>
        $"{library} library ({string.Join(", ", SonamesOf(library))})";

    /// <summary>
    /// What the installed driver allows, read once with <c>cuDriverGetVersion</c> (which needs no <c>cuInit</c>) when the
    /// driver library loads; the libraries are chosen by it.
    /// </summary>
    public static CudaDriverSupport DriverSupport => Support.Value;

    /// <summary>Loads <paramref name="library"/> if it has not been loaded yet; throws if it cannot be found.</summary>
    /// <exception cref="CudaLibraryNotFoundException">No candidate could be loaded.</exception>
    public static void Require(CudaLibrary library) => _ = Load(library);

    /// <summary>Tries to load <paramref name="library"/>; returns where it came from, or why it did not.</summary>
    public static bool TryLoad(CudaLibrary library, out string path, out CudaLibraryNotFoundException? error)
    {
        var result = Result(library);
        path = result.Path ?? "";
        error = result.Error;
        return result.Handle != IntPtr.Zero;
    }

    /// <summary>
    /// Loads <paramref name="library"/> if it has not been loaded yet and says how it was chosen: the file, the candidates
    /// passed over and why (by <see cref="DriverSupport"/>), or every place tried.
    /// </summary>
    public static CudaLibraryChoiceReport Choice(CudaLibrary library)
    {
        var result = Result(library);
        return new CudaLibraryChoiceReport(library, result.Path, result.Skipped, result.Error);
    }

    /// <summary>The native handle of <paramref name="library"/>, loading it on first use.</summary>
    /// <exception cref="CudaLibraryNotFoundException">No candidate could be loaded.</exception>
    public static IntPtr Load(CudaLibrary library)
    {
        var result = Result(library);
        return result.Handle != IntPtr.Zero ? result.Handle : throw result.Error!;
    }

    /// <summary>The folders searched, in order, before falling back to the system loader.</summary>
    public static IReadOnlyList<string> SearchFolders()
    {
        var folders = new List<string>();
        AddPathList(folders, Environment.GetEnvironmentVariable("KEEL_CUDA_LIBRARY_PATH"));
        AddPathList(folders, Environment.GetEnvironmentVariable("LD_LIBRARY_PATH"));
        var cudaPath = Environment.GetEnvironmentVariable("CUDA_PATH");
        if (!string.IsNullOrEmpty(cudaPath))
        {
            folders.Add(Path.Combine(cudaPath, "lib64"));
            folders.Add(Path.Combine(cudaPath, "lib"));
        }
        folders.AddRange(ToolkitFolders("/usr/local"));
        folders.AddRange(PythonWheelFolders());
        return folders.Distinct(StringComparer.Ordinal).ToList();
    }

    private static LoadResult Result(CudaLibrary library) =>
        Results.GetOrAdd(library, l => new Lazy<LoadResult>(() => Probe(l))).Value;

    private static IntPtr ResolveImport(string name, Assembly assembly, DllImportSearchPath? searchPath)
    {
        // Throwing here gives the caller the full probe report instead of the runtime's generic
        // "unable to load shared library" message.
        foreach (var entry in Table)
            if (entry.ImportName == name) return Load(entry.Library);
        return IntPtr.Zero;
    }

    private static LoadResult Probe(CudaLibrary library)
    {
        var entry = Entry(library);
        if (entry.LoadFirst is { } first) TryLoad(first, out _, out _);
        // The driver's version decides the others; the driver itself is what it is.
        var driver = library == CudaLibrary.Driver ? null : DriverSupport;
        return Probe(library, SearchFolders(), useSystemLoader: true, driver);
    }

    /// <summary>
    /// Finds <paramref name="library"/>'s sonames in each of <paramref name="folders"/>, then, when
    /// <paramref name="useSystemLoader"/> is set, by soname through the system loader; passes over what
    /// <paramref name="driver"/> cannot run (null: nothing), and loads the first candidate left that loads. Separate from
    /// the environment so that tests can probe folders, and a driver, of their own.
    /// </summary>
    internal static LoadResult Probe(CudaLibrary library, IReadOnlyList<string> folders, bool useSystemLoader, CudaDriverSupport? driver)
    {
        var attempts = new List<string>();
        var found = new List<LibraryCandidate>();
        var sonames = Entry(library).Sonames;
        foreach (var folder in folders)
        {
            if (!Directory.Exists(folder))
            {
                attempts.Add($"{folder}: no such folder");
                continue;
            }
            var present = false;
            foreach (var soname in sonames)
            {
                var candidate = Path.Combine(folder, soname.Name);
                if (!File.Exists(candidate)) continue;
                present = true;
                found.Add(new LibraryCandidate(candidate, soname));
            }
            if (!present) attempts.Add($"{folder}: none of {string.Join(", ", sonames.Select(s => s.Name))}");
        }
        if (useSystemLoader) found.AddRange(sonames.Select(s => new LibraryCandidate(s.Name, s, BySystemLoader: true)));

        var (usable, skipped) = driver is null ? (found, []) : CudaLibraryChoice.Choose(found, driver);
        foreach (var candidate in usable)
        {
            if (candidate.BySystemLoader)
            {
                if (NativeLibrary.TryLoad(candidate.Location, out var loaded))
                    return new LoadResult(loaded, LoadedPathOf(loaded, library) ?? candidate.Location, skipped, null);
                attempts.Add($"{candidate.Location}: not found by the system loader");
            }
            else if (TryLoadFile(candidate.Location, attempts, out var handle))
            {
                return new LoadResult(handle, candidate.Location, skipped, null);
            }
        }
        attempts.AddRange(skipped.Select(s => $"{s}: passed over"));
        if (skipped.Count > 0) attempts.Add($"({driver!.Basis})");
        return new LoadResult(IntPtr.Zero, null, skipped, new CudaLibraryNotFoundException(library, attempts));
    }

    /// <summary>
    /// Reads the driver's CUDA version once the driver library is loaded. <c>cuDriverGetVersion</c> needs no
    /// <c>cuInit</c>, so it works (and costs nothing) on a machine whose driver sees no GPU.
    /// </summary>
    private static CudaDriverSupport ProbeDriverSupport()
    {
        if (!TryLoad(CudaLibrary.Driver, out _, out var missing))
            return CudaDriverSupport.None($"no CUDA driver ({missing!.Attempts.Count} places tried)");
        var status = CudaDriverNative.cuDriverGetVersion(out var encoded);
        if (status != 0 || encoded <= 0)
            return CudaDriverSupport.None($"the CUDA driver did not report its version (cuDriverGetVersion status {status}, a stub library?)");
        // Encoded as 1000 * major + 10 * minor (cuda.h, cuDriverGetVersion).
        return CudaDriverSupport.Of(new Version(encoded / 1000, encoded % 1000 / 10));
    }

    private static bool TryLoadFile(string path, List<string> attempts, out IntPtr handle)
    {
        try
        {
            handle = NativeLibrary.Load(path);
            return true;
        }
        catch (DllNotFoundException e)
        {
            attempts.Add($"{path}: exists but failed to load: {e.Message}");
        }
        catch (BadImageFormatException e)
        {
            attempts.Add($"{path}: not a loadable library: {e.Message}");
        }
        handle = IntPtr.Zero;
        return false;
    }

    /// <summary>
    /// Where the system loader found a library it loaded by soname: the file that maps the address of one of
    /// the library's exports, read from <c>/proc/self/maps</c>.
    /// </summary>
    private static string? LoadedPathOf(IntPtr handle, CudaLibrary library)
    {
        if (!NativeLibrary.TryGetExport(handle, KnownExportOf(library), out var export)) return null;
        var address = (ulong)export;
        try
        {
            foreach (var line in File.ReadLines("/proc/self/maps"))
            {
                // "start-end perms offset dev inode path"
                var fields = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
                if (fields.Length < 6) continue;
                var range = fields[0].Split('-');
                var start = Convert.ToUInt64(range[0], 16);
                var end = Convert.ToUInt64(range[1], 16);
                if (address >= start && address < end) return fields[5].Trim();
            }
        }
        catch (IOException)
        {
        }
        return null;
    }

    private static string KnownExportOf(CudaLibrary library) => Entry(library).KnownExport;

    private static LibraryEntry Entry(CudaLibrary library) =>
        Array.Find(Table, e => e.Library == library) ?? throw new ArgumentOutOfRangeException(nameof(library), library, null);

    /// <summary><paramref name="stem"/>.<c>version</c> for each version (newest first), then the unversioned <paramref name="stem"/>.</summary>
    private static CudaSoname[] CudaVersioned(string stem, params string[] versions) =>
        [.. versions.Select(v => new CudaSoname($"{stem}.{v}", int.Parse(v.Split('.')[0], CultureInfo.InvariantCulture))), new CudaSoname(stem)];

    private static void AddPathList(List<string> folders, string? list)
    {
        if (string.IsNullOrWhiteSpace(list)) return;
        folders.AddRange(list.Split(':', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
    }

    private static IEnumerable<string> ToolkitFolders(string root)
    {
        if (!Directory.Exists(root)) return [];
        return Directory.EnumerateDirectories(root, "cuda*")
            .OrderByDescending(d => d, StringComparer.Ordinal)
            .Select(d => Path.Combine(d, "lib64"));
    }

    /// <summary>
    /// <c>site-packages/nvidia/*/lib</c> of every Python environment we can find without running Python:
    /// the active virtual or conda environment, then the user's and the system's installations.
    /// </summary>
    private static IEnumerable<string> PythonWheelFolders()
    {
        var prefixes = new List<string>();
        foreach (var variable in new[] { "VIRTUAL_ENV", "CONDA_PREFIX" })
            if (Environment.GetEnvironmentVariable(variable) is { Length: > 0 } prefix) prefixes.Add(prefix);
        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        if (home.Length > 0) prefixes.Add(Path.Combine(home, ".local"));
        prefixes.AddRange(["/usr/local", "/usr", "/opt/conda"]);

        foreach (var prefix in prefixes)
        {
            var lib = Path.Combine(prefix, "lib");
            if (!Directory.Exists(lib)) continue;
            foreach (var python in Directory.EnumerateDirectories(lib, "python3*").OrderByDescending(p => p, StringComparer.Ordinal))
                foreach (var packages in new[] { "site-packages", "dist-packages" })
                {
                    var nvidia = Path.Combine(python, packages, "nvidia");
                    if (!Directory.Exists(nvidia)) continue;
                    foreach (var component in Directory.EnumerateDirectories(nvidia).OrderBy(c => c, StringComparer.Ordinal))
                        yield return Path.Combine(component, "lib");
                }
        }
    }

    /// <summary>One row of the resolver's table.</summary>
    private sealed record LibraryEntry(CudaLibrary Library, string ImportName, string KnownExport, CudaSoname[] Sonames,
                                       CudaLibrary? LoadFirst = null);

    /// <summary>The outcome of one probe: the loaded handle and its path, or the report of every place tried; the candidates passed over.</summary>
    internal sealed record LoadResult(IntPtr Handle, string? Path, IReadOnlyList<string> Skipped, CudaLibraryNotFoundException? Error);
}

/// <summary>How <see cref="CudaLibraries"/> chose one library, for <c>keel info</c>.</summary>
/// <param name="Library">The library.</param>
/// <param name="Path">The file loaded; null when none could be.</param>
/// <param name="Skipped">Candidates found but passed over, each as "location: reason".</param>
/// <param name="Error">Every place tried, when nothing was loaded.</param>
public sealed record CudaLibraryChoiceReport(CudaLibrary Library, string? Path, IReadOnlyList<string> Skipped, CudaLibraryNotFoundException? Error);
