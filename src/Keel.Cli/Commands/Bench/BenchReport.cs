using System.Globalization;
using System.Text;
using System.Text.Json;
using Keel.Cli.Output;

namespace Keel.Cli.Commands.Bench;

/// <summary>One timed case: what ran, how long it took, and what it had to move and compute.</summary>
/// <param name="Case">The shape or configuration, such as <c>16384x1024 bf16 f</c>.</param>
/// <param name="Pass"><c>forward</c>, <c>backward</c> or <c>step</c>.</param>
/// <param name="Microseconds">Median time.</param>
/// <param name="Bytes">The bytes the work must move at least (each input read once, each output written once); 0 if not counted.</param>
/// <param name="Flops">The floating-point operations the work must do; 0 if not counted.</param>
internal sealed record BenchResult(string Case, string Pass, double Microseconds, double Bytes, double Flops)
{
    /// <summary>PyTorch's time for the same case and pass, by implementation (eager, compile, flash, cudnn).</summary>
    public Dictionary<string, double> Baselines { get; } = [];

    public double GBps => Bytes / (Microseconds * 1e-6) / 1e9;

    public double Tflops => Flops / (Microseconds * 1e-6) / 1e12;
}

/// <summary>
/// The results of one <c>keel bench</c> run: printed as a table, and written as JSON and markdown under the
/// output folder with the device, driver, date and commit, as docs/measuring.md asks.
/// </summary>
internal sealed class BenchReport(string suite, string device, string driver, string commit, DateTimeOffset date)
{
    public string Suite { get; } = suite;

    public List<BenchResult> Results { get; } = [];

    /// <summary>Measured ceilings (0 when not measured).</summary>
    public double CopyGBps { get; set; }

    public double GemmTflops { get; set; }

    /// <summary>Why the PyTorch baseline is missing, when it is.</summary>
    public string? BaselineNote { get; set; }

    public void Add(BenchResult result) => Results.Add(result);

    public void WriteTable(TextWriter writer)
    {
        var implementations = Results.SelectMany(r => r.Baselines.Keys).Distinct().Order(StringComparer.Ordinal).ToList();
        var headers = new List<string> { "case", "pass", "µs", "GB/s", "% copy", "TFLOP/s", "% gemm" };
        headers.AddRange(implementations.Select(i => $"x {i}"));
        var table = new TextTable([.. headers]).AlignRight([.. headers.Skip(2)]);
        foreach (var r in Results)
        {
            var row = new List<object?>
            {
                r.Case, r.Pass, Round(r.Microseconds),
                r.Bytes > 0 ? Round(r.GBps) : null, r.Bytes > 0 && CopyGBps > 0 ? Round(100 * r.GBps / CopyGBps) : null,
                r.Flops > 0 ? Round(r.Tflops) : null, r.Flops > 0 && GemmTflops > 0 ? Round(100 * r.Tflops / GemmTflops) : null,
            };
            // "x eager" is PyTorch's time over ours: above 1 means we are faster.
            row.AddRange(implementations.Select(i => r.Baselines.TryGetValue(i, out var t) ? (object)Math.Round(t / r.Microseconds, 2) : null));
            table.Add([.. row]);
        }
        writer.WriteLine($"{Suite} on {device} (driver {driver}), commit {commit}, {date:yyyy-MM-dd}");
        if (CopyGBps > 0) writer.WriteLine($"ceilings: copy {CopyGBps:F0} GB/s, bf16 GEMM {GemmTflops:F0} TFLOP/s");
        table.Write(writer);
        if (BaselineNote is not null) writer.WriteLine($"PyTorch baseline: {BaselineNote}");
    }

    /// <summary>Writes <c>{suite}-{date}.json</c> and <c>.md</c> into <paramref name="folder"/>; returns the JSON path.</summary>
    public string Save(string folder)
    {
        Directory.CreateDirectory(folder);
        var stem = Path.Combine(folder, $"{Suite}-{date:yyyyMMdd-HHmmss}");
        var json = new
        {
            suite = Suite, device, driver, commit, date = date.ToString("O", CultureInfo.InvariantCulture),
            ceilings = new { copy_gbps = CopyGBps, gemm_tflops = GemmTflops },
            baseline_note = BaselineNote,
            results = Results.Select(r => new
            {
                @case = r.Case, pass = r.Pass, microseconds = r.Microseconds, bytes = r.Bytes, flops = r.Flops,
                gbps = r.Bytes > 0 ? r.GBps : (double?)null, tflops = r.Flops > 0 ? r.Tflops : (double?)null,
                torch_microseconds = r.Baselines,
            }),
        };
        File.WriteAllText(stem + ".json", JsonSerializer.Serialize(json, new JsonSerializerOptions { WriteIndented = true }));
        var markdown = new StringWriter(CultureInfo.InvariantCulture);
        markdown.WriteLine($"# keel bench {Suite}");
        markdown.WriteLine();
        markdown.WriteLine("```");
        WriteTable(markdown);
        markdown.WriteLine("```");
        File.WriteAllText(stem + ".md", markdown.ToString(), Encoding.UTF8);
        return stem + ".json";
    }

    private static double Round(double value) => value >= 100 ? Math.Round(value) : Math.Round(value, 1);
}
