using System.Text.RegularExpressions;
using Keel.Cuda.Nvrtc;

namespace Keel.Native.Tests.Kernels;

/// <summary>Tier 2: every kernel specialization compiles with NVRTC for sm_80 and sm_90.</summary>
public class NvrtcCompileTests : IDisposable
{
    private readonly TempFolder _cacheFolder = new();

    public static TheoryData<string, string> SpecsAndArchitectures()
    {
        var data = new TheoryData<string, string>();
        foreach (var spec in KernelCatalog.All)
            foreach (var arch in new[] { "sm_80", "sm_90" })
                data.Add(spec.Key, arch);
        return data;
    }

    [Theory]
    [MemberData(nameof(SpecsAndArchitectures))]
    public void EverySpecializationCompilesToACubinWithAllItsEntryPoints(string key, string arch)
    {
        Requirements.Nvrtc();
        var spec = KernelCatalog.All.Single(s => s.Key == key);
        var compiled = new NvrtcKernelCompiler(new KernelCache(_cacheFolder.Path)).Compile(spec, arch);

        var functions = CubinReader.Read(compiled.Image).Select(f => f.Name).ToList();
        Assert.Equal(KernelSources.EntryPoints(spec.File).Order(StringComparer.Ordinal), functions);
    }

    [Theory]
    [MemberData(nameof(SpecsAndArchitectures))]
    public void CubinReaderAgreesWithPtxasReport(string key, string arch)
    {
        Requirements.Nvrtc();
        var spec = KernelCatalog.All.Single(s => s.Key == key);
        var options = NvrtcKernelCompiler.OptionsFor(spec, arch).Concat(["-Xptxas", "-v"]).ToList();
        var result = NvrtcCompiler.Compile(KernelSources.Read(spec.File), spec.File, KernelSources.Headers, options, NvrtcOutput.Cubin);
        Assert.True(result.Succeeded, result.Log);

        var reported = ParsePtxasReport(result.Log);
        var read = CubinReader.Read(result.Image);
        Assert.Equal(reported.Keys.Order(StringComparer.Ordinal), read.Select(r => r.Name));
        foreach (var usage in read) Assert.Equal(reported[usage.Name], usage);
    }

    [Fact]
    public void SecondCompileComesFromTheCache()
    {
        Requirements.Nvrtc();
        var compiler = new NvrtcKernelCompiler(new KernelCache(_cacheFolder.Path));
        var first = compiler.Compile(CastSpec, "sm_80");
        var second = compiler.Compile(CastSpec, "sm_80");
        Assert.False(first.FromCache);
        Assert.True(second.FromCache);
        Assert.Equal(first.Image, second.Image);
    }

    [Fact]
    public void CorruptCacheEntryIsRecompiled()
    {
        Requirements.Nvrtc();
        var compiler = new NvrtcKernelCompiler(new KernelCache(_cacheFolder.Path));
        var original = compiler.Compile(CastSpec, "sm_90");
        var entry = Assert.Single(Directory.GetFiles(_cacheFolder.Path, "*.cubin"));

        var bytes = File.ReadAllBytes(entry);
        bytes[^1] ^= 0xFF;
        File.WriteAllBytes(entry, bytes);
        var afterFlip = compiler.Compile(CastSpec, "sm_90");
        Assert.False(afterFlip.FromCache);
        Assert.Equal(original.Image, afterFlip.Image);

        File.WriteAllBytes(entry, bytes[..10]);
        var afterTruncation = compiler.Compile(CastSpec, "sm_90");
        Assert.False(afterTruncation.FromCache);
        Assert.Equal(original.Image, afterTruncation.Image);
        Assert.True(compiler.Compile(CastSpec, "sm_90").FromCache);
    }

    [Fact]
    public void ConcurrentCompilersOfOneKernelAllSucceedWithTheSameImage()
    {
        Requirements.Nvrtc();
        var images = new byte[4][];
        Parallel.For(0, images.Length, i =>
            images[i] = new NvrtcKernelCompiler(new KernelCache(_cacheFolder.Path)).Compile(CastSpec, "sm_80").Image);
        Assert.All(images, image => Assert.Equal(images[0], image));
        Assert.Single(Directory.GetFiles(_cacheFolder.Path));
    }

    [Fact]
    public void DifferentDefinesAndArchitecturesAreDifferentCacheEntries()
    {
        Requirements.Nvrtc();
        var compiler = new NvrtcKernelCompiler(new KernelCache(_cacheFolder.Path));
        compiler.Compile(CastSpec, "sm_80");
        compiler.Compile(CastSpec, "sm_90");
        compiler.Compile(new KernelSpec("cast.cu", [new("KEEL_UNUSED", "1")]), "sm_90");
        Assert.Equal(3, Directory.GetFiles(_cacheFolder.Path).Length);
    }

    [Fact]
    public void CompileErrorCarriesFileAndLine()
    {
        Requirements.Nvrtc();
        // Defining the bf16 type's name away breaks common.cuh where the struct is declared.
        var broken = new KernelSpec("cast.cu", [new("bf16", "3")]);
        var error = Assert.Throws<KernelCompileException>(() => new NvrtcKernelCompiler(new KernelCache(_cacheFolder.Path)).Compile(broken, "sm_90"));

        var declaration = KernelSources.Headers["common.cuh"].Split('\n').ToList().FindIndex(l => l.StartsWith("struct bf16")) + 1;
        Assert.Contains(error.Diagnostics, d => d.File == "common.cuh" && d.Line == declaration && d.Severity == "error");
        Assert.Contains($"common.cuh:{declaration}: error", error.Message);
        Assert.Contains("sm_90", error.Message);
        Assert.NotEmpty(error.Log);
    }

    [Theory]
    [InlineData("sm_9")]
    [InlineData("compute_90")]
    [InlineData("sm_13")]
    public void UnsupportedArchitectureIsAnArgumentError(string arch)
    {
        Requirements.Nvrtc();
        Assert.Throws<ArgumentException>("arch", () => new NvrtcKernelCompiler(new KernelCache(_cacheFolder.Path)).Compile(CastSpec, arch));
    }

    public void Dispose() => _cacheFolder.Dispose();

    private static KernelSpec CastSpec => KernelCatalog.All.Single(s => s.File == "cast.cu");

    private static Dictionary<string, KernelResourceUsage> ParsePtxasReport(string log)
    {
        var usage = new Dictionary<string, KernelResourceUsage>();
        foreach (Match entry in Regex.Matches(log,
                     @"Compiling entry function '(?<name>\w+)'.*?(?<frame>\d+) bytes stack frame.*?Used (?<regs>\d+) registers(?:, (?<smem>\d+) bytes smem)?",
                     RegexOptions.Singleline))
        {
            var name = entry.Groups["name"].Value;
            usage[name] = new KernelResourceUsage(name, int.Parse(entry.Groups["regs"].Value), int.Parse(entry.Groups["frame"].Value),
                entry.Groups["smem"].Success ? int.Parse(entry.Groups["smem"].Value) : 0);
        }
        return usage;
    }
}
