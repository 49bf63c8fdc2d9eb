using Keel.Cli.Commands.Bench;

namespace Keel.Native.Tests.Cli;

public class CliTests
{
    [Fact]
    public void CompileListsEveryEntryPointOfTheKernelsItSelects()
    {
        // Every catalog specialization compiling is NvrtcCompileTests' job; this is the command around the compiler,
        // so it compiles one cheap family (the whole catalog again added ten seconds to every run).
        Requirements.Nvrtc();
        using var cache = new TempFolder();
        var (code, output, error) = Run("compile", "--arch", "sm_80", "--kernel", "cast", "--no-cache", "--out", cache.Path);
        Assert.True(code == 0, error);
        var selected = KernelCatalog.All.Where(s => s.Key.Contains("cast", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(selected);
        foreach (var spec in selected)
            foreach (var entry in KernelSources.EntryPoints(spec.File))
                Assert.Contains(entry, output);
        Assert.Equal(selected.Count, Directory.GetFiles(cache.Path, "*.sm_80.cubin").Length);
    }

    [Fact]
    public void CompileRejectsAnArchitectureNvrtcCannotTarget()
    {
        Requirements.Nvrtc();
        var (code, _, error) = Run("compile", "--arch", "sm_7");
        Assert.Equal(1, code);
        Assert.Contains("sm_7", error);
        Assert.DoesNotContain("Parameter", error);
    }

    [Fact]
    public void InfoReportsEachLibraryFoundOrWhereItLooked()
    {
        var (code, output, _) = Run("info");
        Assert.Equal(0, code);
        foreach (var library in new[] { "Driver", "Nvrtc", "Cublas", "CublasLt" }) Assert.Contains(library, output);
        // Which versions the driver allows, and why: its CUDA version, or that there is none.
        Assert.Contains("  versions: " + CudaLibraries.DriverSupport.Basis, output);
    }

    [Fact]
    public void BenchWithoutAGpuSaysSoAndSucceeds()
    {
        var (code, output, _) = Run("bench", "ceilings");
        if (!output.Contains("no GPU here")) Assert.Skip("a GPU is present: " + output);
        Assert.Equal(0, code);
    }

    [Fact]
    public void BenchRejectsAnUnknownTarget()
    {
        var (code, _, error) = Run("bench", "warp-drive");
        Assert.Equal(2, code);
        Assert.Contains("ceilings", error);
    }

    [Fact]
    public void BenchSkipsTheBaselineOnlyWhenAsked()
    {
        using var parser = new CommandLine.Parser();
        var skipped = Assert.IsType<CommandLine.Parsed<BenchOptions>>(parser.ParseArguments<BenchOptions>(["train", "--no-baseline"]));
        Assert.True(skipped.Value.NoBaseline);
        var run = Assert.IsType<CommandLine.Parsed<BenchOptions>>(parser.ParseArguments<BenchOptions>(["train"]));
        Assert.False(run.Value.NoBaseline);
    }

    [Fact]
    public void BenchReportMatchesBaselinesAndWritesJsonAndMarkdown()
    {
        var report = new BenchReport("norm", "test GPU", "13.0", "abc", DateTimeOffset.UnixEpoch) { CopyGBps = 3000, GemmTflops = 700 };
        report.Add(new BenchResult("16384x1024", "forward", 100, 150e6, 0));
        report.Add(new BenchResult("16384x1024", "backward", 200, 250e6, 0));
        TorchBaseline.Merge("""[{"case":"16384x1024","pass":"forward","impl":"eager","microseconds":300},{"case":"other","pass":"forward","impl":"eager","microseconds":1}]""", report);

        Assert.Equal(300, report.Results[0].Baselines["eager"]);
        Assert.Empty(report.Results[1].Baselines);
        var table = new StringWriter();
        report.WriteTable(table);
        Assert.Contains("1500", table.ToString()); // 150 MB in 100 µs is 1500 GB/s
        Assert.Contains("x eager", table.ToString());

        using var folder = new TempFolder();
        var json = report.Save(folder.Path);
        Assert.Contains("\"torch_microseconds\"", File.ReadAllText(json));
        Assert.True(File.Exists(Path.ChangeExtension(json, ".md")));
    }

    private static (int Code, string Output, string Error) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var code = KeelCli.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }
}
