using System.Reflection;
using System.Text.RegularExpressions;

namespace Keel.Native.Kernels;

/// <summary>
/// The CUDA C++ sources of <c>kernels/</c>, embedded in this assembly: translation units (<c>*.cu</c>) and the
/// headers they include (<c>*.cuh</c>). NVRTC and the CPU emulator both compile from here, so a packaged
/// library carries its kernels with it.
/// </summary>
public static partial class KernelSources
{
    private const string Prefix = "kernels/";
    private static readonly Lazy<IReadOnlyDictionary<string, string>> All = new(LoadAll);

    /// <summary>The translation units, by file name (for example <c>optimizer.cu</c>), sorted.</summary>
    public static IReadOnlyList<string> Files =>
        All.Value.Keys.Where(k => k.EndsWith(".cu", StringComparison.Ordinal) && !k.Contains('/')).Order(StringComparer.Ordinal).ToList();

    /// <summary>The headers kernels may include, by include name (for example <c>common.cuh</c>).</summary>
    public static IReadOnlyDictionary<string, string> Headers { get; } =
        new Lazy<IReadOnlyDictionary<string, string>>(() => All.Value
            .Where(kv => kv.Key.EndsWith(".cuh", StringComparison.Ordinal) && !kv.Key.Contains('/'))
            .ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal)).Value;

    /// <summary>Every embedded file under <c>kernels/</c> (sources, headers and the emulation runtime), by relative path.</summary>
    public static IReadOnlyDictionary<string, string> Everything => All.Value;

    /// <summary>The text of translation unit <paramref name="file"/>.</summary>
    /// <exception cref="ArgumentException">No kernel file has that name.</exception>
    public static string Read(string file) =>
        All.Value.TryGetValue(file, out var text)
            ? text
            : throw new ArgumentException($"No kernel file '{file}'. Known files: {string.Join(", ", Files)}.", nameof(file));

    /// <summary>
    /// The entry points of <paramref name="file"/>: every <c>extern "C" __global__</c> function, in source
    /// order. By convention entry points are never inside <c>#if</c>, so every specialization has them all.
    /// </summary>
    public static IReadOnlyList<string> EntryPoints(string file) => EntryPointsIn(Read(file));

    /// <summary>The <c>extern "C" __global__</c> functions declared in CUDA source <paramref name="source"/>, in order.</summary>
    public static IReadOnlyList<string> EntryPointsIn(string source) =>
        EntryPointPattern().Matches(source).Select(m => m.Groups["name"].Value).ToList();

    [GeneratedRegex(@"extern\s+""C""\s+__global__\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(?<name>keel_\w+)\s*\(")]
    private static partial Regex EntryPointPattern();

    private static IReadOnlyDictionary<string, string> LoadAll()
    {
        var assembly = typeof(KernelSources).Assembly;
        var files = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var name in assembly.GetManifestResourceNames().Where(n => n.StartsWith(Prefix, StringComparison.Ordinal)))
        {
            using var stream = assembly.GetManifestResourceStream(name)!;
            using var reader = new StreamReader(stream);
            files[name[Prefix.Length..]] = reader.ReadToEnd();
        }
        return files;
    }
}
