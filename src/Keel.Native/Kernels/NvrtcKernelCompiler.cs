using System.Diagnostics;
using System.Text.RegularExpressions;
using Keel.Cuda.Nvrtc;

namespace Keel.Native.Kernels;

/// <summary>
/// Compiles kernel specializations with NVRTC to a CUBIN for one exact architecture. Never PTX: a PTX image
/// is JIT-compiled by the driver, and PTX from an NVRTC newer than the driver is rejected; a CUBIN from any
/// supported NVRTC loads on any driver that knows the architecture. Results are cached on disk by
/// <see cref="KernelCache"/>.
/// </summary>
public sealed partial class NvrtcKernelCompiler
{
    private readonly KernelCache _cache;
    private readonly Lazy<Version> _version = new(() => NvrtcCompiler.Version);

    /// <summary>Compiles through <paramref name="cache"/> (<see cref="KernelCache.Default"/> if null).</summary>
    public NvrtcKernelCompiler(KernelCache? cache = null) => _cache = cache ?? KernelCache.Default;

    /// <summary>The options every kernel is compiled with, before its defines and architecture.</summary>
    public static IReadOnlyList<string> BaseOptions { get; } =
    [
        "-std=c++17",
        // Line tables cost nothing at run time and let Nsight Compute map stalls to source lines.
        "-lineinfo",
    ];

    /// <summary>The NVRTC version in use.</summary>
    public Version CompilerVersion => _version.Value;

    /// <summary>The full option list for <paramref name="spec"/> on <paramref name="arch"/>.</summary>
    public static IReadOnlyList<string> OptionsFor(KernelSpec spec, string arch) =>
        [.. BaseOptions, $"--gpu-architecture={arch}", .. spec.DefineOptions];

    /// <summary>Compiles <paramref name="spec"/> for <paramref name="arch"/> (such as <c>sm_90</c>), or reads it from the cache.</summary>
    /// <exception cref="ArgumentException"><paramref name="arch"/> is malformed or not supported by this NVRTC.</exception>
    /// <exception cref="KernelCompileException">The source has errors; the message gives file:line.</exception>
    public CompiledKernel Compile(KernelSpec spec, string arch)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ValidateArchitecture(arch);
        var source = KernelSources.Read(spec.File);
        var options = OptionsFor(spec, arch);
        var key = KernelCache.KeyOf(CacheKeyParts(spec, arch, source, options));
        var path = _cache.PathOf(Path.GetFileNameWithoutExtension(spec.File) + "-" + arch, key, ".cubin");
        if (_cache.TryRead(path, out var cached)) return new CompiledKernel(spec, arch, cached, "", TimeSpan.Zero, FromCache: true);

        var clock = Stopwatch.StartNew();
        var result = NvrtcCompiler.Compile(source, "kernels/" + spec.File, KernelSources.Headers, options, NvrtcOutput.Cubin);
        if (!result.Succeeded) throw new KernelCompileException(spec, arch, result.Log);
        _cache.Write(path, result.Image);
        return new CompiledKernel(spec, arch, result.Image, result.Log, clock.Elapsed, FromCache: false);
    }

    /// <summary>Checks that <paramref name="arch"/> reads <c>sm_XY</c> and that this NVRTC can target it.</summary>
    /// <exception cref="ArgumentException">It cannot be compiled for.</exception>
    public void ValidateArchitecture(string arch)
    {
        var match = ArchitecturePattern().Match(arch ?? "");
        if (!match.Success)
            throw new ArgumentException($"Architecture '{arch}' is not of the form sm_80 or sm_90.", nameof(arch));
        var number = int.Parse(match.Groups["cc"].Value, System.Globalization.CultureInfo.InvariantCulture);
        var supported = NvrtcCompiler.SupportedArchitectures;
        if (!supported.Contains(number))
            throw new ArgumentException(
                $"NVRTC {CompilerVersion} cannot compile for {arch}; it supports {string.Join(", ", supported.Select(a => "sm_" + a))}.", nameof(arch));
    }

    private IEnumerable<string> CacheKeyParts(KernelSpec spec, string arch, string source, IReadOnlyList<string> options)
    {
        yield return "nvrtc-cubin";
        yield return CompilerVersion.ToString();
        yield return arch;
        foreach (var option in options) yield return option;
        yield return spec.File;
        yield return source;
        foreach (var (name, text) in KernelSources.Headers.OrderBy(h => h.Key, StringComparer.Ordinal))
        {
            yield return name;
            yield return text;
        }
    }

    [GeneratedRegex(@"^sm_(?<cc>\d{2,3})$")]
    private static partial Regex ArchitecturePattern();
}
