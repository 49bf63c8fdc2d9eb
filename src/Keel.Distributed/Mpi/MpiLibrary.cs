using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Keel.Distributed.Mpi;

/// <summary>
/// Finds and loads Open MPI's <c>libmpi</c> for the bindings of this assembly, and resolves the predefined handles that
/// Open MPI exports as global objects. The library is looked for, in this order, at <c>KEEL_MPI_LIBRARY</c> (a file), in
/// <c>$OPAL_PREFIX/lib</c> (an Open MPI installed somewhere else and moved there), then by soname (<c>libmpi.so.40</c>,
/// Open MPI 3 to 5, then <c>libmpi.so</c>) through the system loader, which also searches <c>LD_LIBRARY_PATH</c>. A miss
/// raises <see cref="DllNotFoundException"/> listing every place tried.
/// <para>
/// It is loaded with <c>RTLD_GLOBAL</c>: Open MPI opens its components (transports, collectives) as plugins that resolve
/// symbols of <c>libmpi</c> and <c>libopen-pal</c> from the global scope, which a library opened privately (as
/// <see cref="NativeLibrary.Load(string)"/> does) does not join. The ABI bound here is Open MPI's, where a handle is the
/// address of a library object (<c>MPI_COMM_WORLD</c> is <c>&amp;ompi_mpi_comm_world</c>); MPICH's integer handles are not
/// supported.
/// </para>
/// </summary>
public static class MpiLibrary
{
    /// <summary>The logical name the bindings use in <c>[LibraryImport]</c>.</summary>
    internal const string Name = "mpi";

    /// <summary>The sonames tried, newest ABI first.</summary>
    public static IReadOnlyList<string> Sonames { get; } = ["libmpi.so.40", "libmpi.so"];

    private static readonly Lazy<(IntPtr Handle, string? Path, string? Error)> Loaded = new(Probe);

    // The resolver must be in place before the first P/Invoke of this assembly runs.
    [ModuleInitializer]
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2255", Justification = "Registers this assembly's own import resolver.")]
    internal static void RegisterResolver() =>
        NativeLibrary.SetDllImportResolver(typeof(MpiLibrary).Assembly, (name, _, _) => name == Name ? Load() : IntPtr.Zero);

    /// <summary>True when libmpi can be loaded; <paramref name="pathOrError"/> says from where, or every place tried.</summary>
    public static bool TryLoad(out string pathOrError)
    {
        var (handle, path, error) = Loaded.Value;
        pathOrError = handle != IntPtr.Zero ? path! : error!;
        return handle != IntPtr.Zero;
    }

    /// <summary>The native handle of libmpi, loading it on first use.</summary>
    /// <exception cref="DllNotFoundException">It could not be loaded (the message lists every place tried).</exception>
    public static IntPtr Load()
    {
        var (handle, _, error) = Loaded.Value;
        return handle != IntPtr.Zero ? handle : throw new DllNotFoundException(error);
    }

    /// <summary>The address of the global object Open MPI exports as <paramref name="symbol"/>: a predefined handle.</summary>
    /// <exception cref="EntryPointNotFoundException">libmpi has no such export (not Open MPI).</exception>
    internal static IntPtr Global(string symbol)
    {
        if (NativeLibrary.TryGetExport(Load(), symbol, out var address)) return address;
        throw new EntryPointNotFoundException($"libmpi exports no {symbol}: Keel binds Open MPI's ABI (3.x to 5.x), where predefined handles are exported objects; another MPI (MPICH, Intel MPI) is not supported.");
    }

    private static (IntPtr, string?, string?) Probe()
    {
        var attempts = new List<string>();
        var candidates = new List<string>();
        if (Environment.GetEnvironmentVariable("KEEL_MPI_LIBRARY") is { Length: > 0 } explicitPath) candidates.Add(explicitPath);
        if (Environment.GetEnvironmentVariable("OPAL_PREFIX") is { Length: > 0 } prefix)
            candidates.AddRange(Sonames.Select(s => Path.Combine(prefix, "lib", s)));
        candidates.AddRange(Sonames);
        foreach (var candidate in candidates)
        {
            var handle = DynamicLoader.OpenGlobal(candidate, out var why);
            if (handle != IntPtr.Zero) return (handle, candidate, null);
            attempts.Add($"{candidate}: {why}");
        }
        var error = "Open MPI's libmpi (" + string.Join(", ", Sonames) + ") was not found; install Open MPI (Debian: openmpi-bin libopenmpi-dev) or set KEEL_MPI_LIBRARY to the file. Tried:"
                    + Environment.NewLine + string.Join(Environment.NewLine, attempts.Select(a => "  " + a));
        return (IntPtr.Zero, null, error);
    }
}

/// <summary>The C library's dynamic loader, for a library that must be opened into the global symbol scope.</summary>
internal static unsafe partial class DynamicLoader
{
    private const int RtldNow = 0x2, RtldGlobal = 0x100;

    /// <summary><c>dlopen(path, RTLD_NOW | RTLD_GLOBAL)</c>; on failure returns zero and <c>dlerror()</c>'s text.</summary>
    public static IntPtr OpenGlobal(string path, out string error)
    {
        var handle = dlopen(path, RtldNow | RtldGlobal);
        error = handle == IntPtr.Zero ? Marshal.PtrToStringUTF8((IntPtr)dlerror()) ?? "dlopen failed" : "";
        return handle;
    }

    // glibc 2.34 and later export dlopen from libc itself; libdl.so.2 still forwards to it for older ones.
    [LibraryImport("libdl.so.2", StringMarshalling = StringMarshalling.Utf8)]
    private static partial IntPtr dlopen(string path, int flags);

    [LibraryImport("libdl.so.2")]
    private static partial byte* dlerror();
}
