using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Keel.Cli.Output;
using Keel.Native.Studies;
using Keel.Native.Training;

namespace Keel.Cli.Commands.Study;

/// <summary>
/// The results of a study as a table (on the terminal and in <c>study.md</c>, with the command, the machine, the wall time
/// and the divergence rule) and as <c>study.json</c> (every run's result without its loss curve, which stays in the run's
/// own <c>result.json</c> and <c>metrics.jsonl</c>).
/// </summary>
internal sealed class StudyReport(StudyKind kind, DivergenceCriteria criteria, IReadOnlyList<StudyRunResult?> results, IReadOnlyList<StudyRun> runs,
                                  IReadOnlyList<string> command, string? device, TimeSpan wallTime)
{
    public const string MarkdownFile = "study.md";
    public const string JsonFile = "study.json";

    private static readonly JsonSerializerOptions Indented = new(StudyJson.Options) { WriteIndented = true };

    private static readonly string[] Headers = ["run", "arch", "L", "peak lr", "steps", "diverged at", "divergence lr", "min loss", "lr at min", "final train", "validation", "tok/s"];

    public void WriteTable(TextWriter output)
    {
        var table = new TextTable(Headers).AlignRight(Headers[2..]);
        foreach (var row in Rows()) table.Add(row);
        table.Write(output);
        if (Ordering() is { } ordering) output.WriteLine(ordering);
    }

    public void Save(string folder)
    {
        var machine = Machine();
        var text = new StringBuilder();
        text.AppendLine($"# keel study {StudyCommand.KindName(kind)}").AppendLine();
        text.AppendLine("```sh").AppendLine("keel " + string.Join(' ', command.Select(Quote))).AppendLine("```").AppendLine();
        text.AppendLine($"- Machine: {machine}; device {device ?? "(none opened: every run had finished before)"}");
        text.AppendLine($"- Wall time of this invocation: {StudyProgressPrinter.Duration(wallTime)}; the runs' own times add up to {StudyProgressPrinter.Duration(TimeSpan.FromSeconds(results.OfType<StudyRunResult>().Sum(r => r.Seconds)))}");
        text.AppendLine($"- Divergence: {criteria.Describe()}.");
        text.AppendLine("- Final train: the mean training loss over the last tenth of a run's steps; validation: after the last step (none for a diverged run).");
        if (results.Any(r => r is null)) text.AppendLine($"- Unfinished: {string.Join(", ", runs.Where((_, i) => results[i] is null).Select(r => r.Name))}");
        text.AppendLine();
        text.AppendLine("| " + string.Join(" | ", Headers) + " |");
        text.AppendLine("|" + string.Concat(Headers.Select((_, i) => i < 2 ? " --- |" : " ---: |")));
        foreach (var row in Rows()) text.AppendLine("| " + string.Join(" | ", row) + " |");
        if (Ordering() is { } ordering) text.AppendLine().AppendLine(ordering);
        AtomicFile.WriteText(Path.Combine(folder, MarkdownFile), text.ToString());

        var json = new
        {
            kind = StudyCommand.KindName(kind),
            command,
            machine,
            device,
            wall_seconds = Math.Round(wallTime.TotalSeconds, 1),
            divergence = new { criteria.Margin, criteria.Patience, rule = criteria.Describe() },
            runs = runs.Select((run, i) => results[i] is { } r ? Summary(r) : new JsonObject { ["name"] = run.Name, ["unfinished"] = true }),
        };
        AtomicFile.WriteText(Path.Combine(folder, JsonFile), JsonSerializer.Serialize(json, Indented));
    }

    /// <summary>The processor (from /proc/cpuinfo where there is one), its core count, the OS and the runtime.</summary>
    private static string Machine()
    {
        var processor = File.Exists("/proc/cpuinfo")
            ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim()
            : null;
        return $"{processor ?? System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture.ToString()}, {Environment.ProcessorCount} cores, " +
               $"{System.Runtime.InteropServices.RuntimeInformation.OSDescription}, .NET {Environment.Version}";
    }

    /// <summary>A run's result without its curve and identity, which stay in its own result.json.</summary>
    private static JsonObject Summary(StudyRunResult result)
    {
        var node = JsonSerializer.SerializeToNode(result, StudyJson.Options)!.AsObject();
        node.Remove("curve");
        node.Remove("identity");
        return node;
    }

    private IEnumerable<string[]> Rows()
    {
        for (var i = 0; i < runs.Count; i++)
        {
            var run = runs[i];
            if (results[i] is not { } r)
            {
                yield return [run.Name, Arch(run.Config.Architecture), Int(run.Config.SubLayers), StudyRun.FormatRate(run.Options.LearningRate), "unfinished", "", "", "", "", "", "", ""];
                continue;
            }
            yield return
            [
                r.Name, Arch(r.Architecture), Int(r.SubLayers), StudyRun.FormatRate(r.PeakLearningRate), Int(r.Steps),
                r.Diverged ? $"{r.DivergedAtStep} ({Reason(r.DivergenceReason)})" : "-",
                r.DivergenceLearningRate is { } lr ? Rate(lr) : "-",
                Loss(r.MinimumLoss), r.LearningRateAtMinimum is { } m ? Rate(m) : "-",
                Loss(r.FinalTrainLoss), Loss(r.ValidationLoss), r.TokensPerSecond.ToString("0", CultureInfo.InvariantCulture),
            ];
        }
    }

    /// <summary>
    /// For a range test, the architectures by the learning rate they diverged at, highest first (the paper's Table 1
    /// ordering), each with its lowest loss: a run that never trains (stuck near the unigram loss) never rises above its
    /// minimum either, and ranks first without having been stable in any useful sense.
    /// </summary>
    private string? Ordering()
    {
        if (kind != StudyKind.LrRange) return null;
        var lines = results.OfType<StudyRunResult>().GroupBy(r => r.SubLayers).Select(group =>
        {
            // Runs that did not diverge rank first, tied with each other; ties are joined by "=".
            var ranked = group.Select(r => (Rate: r.DivergenceLearningRate ?? double.PositiveInfinity,
                                            Text: $"{Arch(r.Architecture)} {(r.DivergenceLearningRate is { } lr ? Rate(lr) : $"(none up to {Rate(r.PeakLearningRate)})")} " +
                                                  $"(lowest loss {Loss(r.MinimumLoss)})"))
                              .OrderByDescending(r => r.Rate).ToList();
            var text = new StringBuilder(ranked[0].Text);
            for (var i = 1; i < ranked.Count; i++) text.Append(ranked[i].Rate == ranked[i - 1].Rate ? " = " : " > ").Append(ranked[i].Text);
            return $"L = {group.Key}, divergence learning rate, highest first: {text}";
        });
        return string.Join(Environment.NewLine, lines);
    }

    private static string Arch(Native.Model.Architecture architecture) => architecture.ToString().ToLowerInvariant();

    private static string Reason(DivergenceReason? reason) => reason switch
    {
        DivergenceReason.NonFiniteLoss => "non-finite",
        DivergenceReason.LossAboveMinimum => "above min",
        DivergenceReason.NanGuard => "NaN guard",
        _ => "",
    };

    private static string Int(int value) => value.ToString(CultureInfo.InvariantCulture);

    private static string Rate(double value) => value.ToString("0.00e+0", CultureInfo.InvariantCulture);

    private static string Loss(double? value) => value is { } v ? v.ToString("0.0000", CultureInfo.InvariantCulture) : "-";

    private static string Quote(string argument) => argument.Any(char.IsWhiteSpace) ? $"'{argument}'" : argument;
}
