using System.Reflection;
using CommandLine;
using Keel.Cuda.Driver;
using Keel.Native.Devices;
using Keel.Native.Devices.Cuda;

namespace Keel.Cli.Commands.Bench;

[Verb("bench", HelpText = "Measure kernels on the GPU against the device's measured ceilings and PyTorch in the same job. Targets: ceilings (copy bandwidth and bf16 GEMM rate), norm (fused residual norm, shapes ROWSxHIDDEN), attention (flash attention and RoPE against SDPA), train (a whole training step: tokens/s and MFU), collectives (NCCL bus bandwidth over the job's GPUs: mpirun -np N keel bench collectives; --host: MPI over host memory).")]
internal sealed class BenchOptions
{
    [Value(0, MetaName = "target", Required = true, HelpText = "What to measure: ceilings, or a kernel family the build provides (norm, attention, train).")]
    public string Target { get; init; } = "";

    [Option("shape", Separator = ';', HelpText = "Cases to run instead of the target's defaults, ';'-separated, in the target's own syntax (see each target's defaults in the table).")]
    public IEnumerable<string> Shapes { get; init; } = [];

    [Option("repeats", Default = 50, HelpText = "Timed runs per case; the median is reported.")]
    public int Repeats { get; init; } = 50;

    [Option("warmup", Default = 10, HelpText = "Untimed runs before timing.")]
    public int Warmup { get; init; } = 10;

    [Option("device", Default = 0, HelpText = "GPU ordinal.")]
    public int Device { get; init; }

    [Option("out", HelpText = "Folder for the JSON and markdown results (default: perf/results of the repository, else ./bench-results).")]
    public string? OutputFolder { get; init; }

    [Option("no-baseline", Default = false, HelpText = "Skip the PyTorch baseline script of perf/baselines, which otherwise runs in the same job.")]
    public bool NoBaseline { get; init; }

    [Option("python", Default = "python3", HelpText = "The Python interpreter with torch, for the baseline.")]
    public string Python { get; init; } = "python3";

    [Option("host", Default = false, HelpText = "collectives only: measure MPI over host memory (the CPU and emulated devices' path) instead of NCCL on GPUs.")]
    public bool Host { get; init; }
}

/// <summary><c>keel bench</c>: GPU measurements as docs/measuring.md describes them.</summary>
internal static class BenchCommand
{
    /// <summary>Every target, by name.</summary>
    private static readonly IBenchmarkSuite[] Suites =
    [
        new CeilingsSuite(),
        new NormSuite(),
        new AttentionSuite(),
        new TrainSuite(),
    ];

    public static int Run(BenchOptions options, TextWriter output, TextWriter error)
    {
        var suite = Suites.FirstOrDefault(s => s.Name == options.Target);
        if (suite is null && options.Target != CollectivesBench.Name)
        {
            error.WriteLine($"keel bench: unknown target '{options.Target}'. Targets: {string.Join(", ", Suites.Select(s => $"{s.Name} ({s.Description})"))}, {CollectivesBench.Name} ({CollectivesBench.Description}).");
            return 2;
        }
        if (options.Repeats < 1 || options.Warmup < 0)
        {
            error.WriteLine("keel bench: --repeats must be at least 1 and --warmup not negative.");
            return 2;
        }
        if (suite is null) return CollectivesBench.Run(options, output, error);
        if (options.Host)
        {
            error.WriteLine($"keel bench: --host applies to {CollectivesBench.Name} only.");
            return 2;
        }
        if (Gpus.WhyNone() is { } reason)
        {
            output.WriteLine($"keel bench {suite.Name}: no GPU here ({reason}); nothing to measure.");
            return 0;
        }

        using var device = CudaDevice.Open(options.Device);
        var context = new BenchContext(device, options, output);
        var report = new BenchReport(suite.Name, device.Name, CudaDriver.Version.ToString(), Commit(), DateTimeOffset.UtcNow);
        output.WriteLine($"keel bench {suite.Name} on {device.Name}: {options.Repeats} timed runs per case after {options.Warmup} warm-up runs");
        (report.CopyGBps, report.GemmTflops) = context.Ceilings;
        suite.Run(context, report);
        device.Synchronize();

        var root = RepositoryRoot();
        if (suite.BaselineScript is { } script && !options.NoBaseline)
            TorchBaseline.Run(options.Python, Path.Combine(root ?? ".", "perf", "baselines", script), context.Shapes, report, output);
        else if (suite.BaselineScript is not null)
            report.BaselineNote = "skipped (--no-baseline)";

        report.WriteTable(output);
        var saved = report.Save(options.OutputFolder ?? ResultsFolder());
        output.WriteLine($"results: {saved} (and .md)");
        return 0;
    }

    /// <summary>Where results go without <c>--out</c>: the repository's perf/results, else ./bench-results.</summary>
    internal static string ResultsFolder() => RepositoryRoot() is { } root ? Path.Combine(root, "perf", "results") : "bench-results";

    /// <summary>The folder holding perf/baselines, searched upward from the working directory.</summary>
    private static string? RepositoryRoot()
    {
        for (var folder = new DirectoryInfo(Environment.CurrentDirectory); folder is not null; folder = folder.Parent)
            if (Directory.Exists(Path.Combine(folder.FullName, "perf", "baselines"))) return folder.FullName;
        return null;
    }

    internal static string Commit()
    {
        var version = typeof(BenchCommand).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "";
        var plus = version.IndexOf('+');
        return plus >= 0 ? version[(plus + 1)..Math.Min(version.Length, plus + 13)] : "unknown";
    }
}
