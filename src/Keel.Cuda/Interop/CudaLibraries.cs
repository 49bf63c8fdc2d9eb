using System.Collections.Concurrent;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

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
/// Within each place the sonames are tried newest CUDA first (13, 12, 11). A miss raises
/// <see cref="CudaLibraryNotFoundException"/> listing every candidate tried.
/// </summary>
public static class CudaLibraries
{
    private static readonly ConcurrentDictionary<CudaLibrary, Lazy<LoadResult>> Results = new();

    /// <summary>The logical names the bindings use in <c>[LibraryImport]</c>.</summary>
    internal const string DriverName = "cuda", NvrtcName = "nvrtc", CublasName = "cublas", CublasLtName = "cublasLt", NcclName = "nccl";

    // The resolver must be in place before the first P/Invoke of this assembly runs, whoever calls it first.
    [ModuleInitializer]
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2255", Justification = "Registers this assembly's own import resolver.")]
    internal static void RegisterResolver() =>
        NativeLibrary.SetDllImportResolver(typeof(CudaLibraries).Assembly, ResolveImport);

    /// <summary>The sonames tried for <paramref name="library"/>, newest CUDA first.</summary>
    public static IReadOnlyList<string> SonamesOf(CudaLibrary library) => library switch
    {
        CudaLibrary.Driver => ["libcuda.so.1", "libcuda.so"],
        CudaLibrary.Nvrtc => ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"],
        CudaLibrary.Cublas => ["libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"],
        CudaLibrary.CublasLt => ["libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so.11", "libcublasLt.so"],
        CudaLibrary.Nccl => ["libnccl.so.2", "libnccl.so"],
        _ => throw new ArgumentOutOfRangeException(nameof(library), library, null),
    };

    /// <summary>A human name for <paramref name="library"/> with its sonames, for messages.</summary>
    public static string Describe(CudaLibrary library) =>
        $"{library} library ({string.Join(", ", SonamesOf(library))})";

    /// <summary>Loads <paramref name="library"/> if it has not been loaded yet; throws if it cannot be found.</summary>
    /// <exception cref="CudaLibraryNotFoundException">No candidate could be loaded.</exception>
    public static void Require(CudaLibrary library) => _ = Load(library);

    /// <summary>Tries to load <paramref name="library"/>; returns where it came from, or why it did not.</summary>
    public static bool TryLoad(CudaLibrary library, out string path, out CudaLibraryNotFoundException? error)
    {
        var result = Results.GetOrAdd(library, l => new Lazy<LoadResult>(() => Probe(l))).Value;
        path = result.Path ?? "";
        error = result.Error;
        return result.Handle != IntPtr.Zero;
    }

    /// <summary>The native handle of <paramref name="library"/>, loading it on first use.</summary>
    /// <exception cref="CudaLibraryNotFoundException">No candidate could be loaded.</exception>
    public static IntPtr Load(CudaLibrary library)
    {
        var result = Results.GetOrAdd(library, l => new Lazy<LoadResult>(() => Probe(l))).Value;
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

    private static IntPtr ResolveImport(string name, Assembly assembly, DllImportSearchPath? searchPath)
    {
        CudaLibrary? library = name switch
        {
            DriverName => CudaLibrary.Driver,
            NvrtcName => CudaLibrary.Nvrtc,
            CublasName => CudaLibrary.Cublas,
            CublasLtName => CudaLibrary.CublasLt,
            NcclName => CudaLibrary.Nccl,
            _ => null,
        };
        // Throwing here gives the caller the full probe report instead of the runtime's generic
        // "unable to load shared library" message.
        return library is { } l ? Load(l) : IntPtr.Zero;
    }

    private static LoadResult Probe(CudaLibrary library)
    {
        // libcublas needs libcublasLt. Loading it first, from wherever it is found, satisfies that dependency
        // by soname even when the folder is known only to KEEL_CUDA_LIBRARY_PATH and not to the system loader.
        if (library == CudaLibrary.Cublas) TryLoad(CudaLibrary.CublasLt, out _, out _);
        return Probe(library, SearchFolders(), useSystemLoader: true);
    }

    /// <summary>
    /// Tries each soname of <paramref name="library"/> in each of <paramref name="folders"/>, then, when
    /// <paramref name="useSystemLoader"/> is set, by soname through the system loader. Separate from the
    /// environment so that tests can probe folders of their own.
    /// </summary>
    internal static LoadResult Probe(CudaLibrary library, IReadOnlyList<string> folders, bool useSystemLoader)
    {
        var attempts = new List<string>();
        var sonames = SonamesOf(library);
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
                var candidate = Path.Combine(folder, soname);
                if (!File.Exists(candidate)) continue;
                present = true;
                if (TryLoadFile(candidate, attempts, out var handle)) return new LoadResult(handle, candidate, null);
            }
            if (!present) attempts.Add($"{folder}: none of {string.Join(", ", sonames)}");
        }
        foreach (var soname in useSystemLoader ? sonames : [])
        {
            if (NativeLibrary.TryLoad(soname, out var handle))
                return new LoadResult(handle, LoadedPathOf(handle, library) ?? soname, null);
            attempts.Add($"{soname}: not found by the system loader");
        }
        return new LoadResult(IntPtr.Zero, null, new CudaLibraryNotFoundException(library, attempts));
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

    private static string KnownExportOf(CudaLibrary library) => library switch
    {
        CudaLibrary.Driver => "cuInit",
        CudaLibrary.Nvrtc => "nvrtcVersion",
        CudaLibrary.Cublas => "cublasCreate_v2",
        CudaLibrary.CublasLt => "cublasLtCreate",
        CudaLibrary.Nccl => "ncclGetVersion",
        _ => throw new ArgumentOutOfRangeException(nameof(library), library, null),
    };

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

    /// <summary>The outcome of one probe: the loaded handle and its path, or the report of every place tried.</summary>
    internal sealed record LoadResult(IntPtr Handle, string? Path, CudaLibraryNotFoundException? Error);
}
