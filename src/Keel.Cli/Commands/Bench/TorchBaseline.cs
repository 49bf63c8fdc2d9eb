using System.Diagnostics;
using System.Text.Json;

namespace Keel.Cli.Commands.Bench;

/// <summary>
/// Runs a PyTorch baseline script of <c>perf/baselines/</c> in the same job, on the same GPU, and matches its
/// timings to the report's cases. The script takes <c>--json OUT</c> and the same <c>--shape</c> values, and
/// writes a list of <c>{"case", "pass", "impl", "microseconds"}</c>.
/// </summary>
internal static class TorchBaseline
{
    /// <summary>Runs <paramref name="script"/>; fills each result's baselines, or sets the report's note saying why not.</summary>
    public static void Run(string python, string script, IReadOnlyList<string> shapes, BenchReport report, TextWriter log)
    {
        if (!File.Exists(script))
        {
            report.BaselineNote = $"{script} not found";
            return;
        }
        var output = Path.Combine(Path.GetTempPath(), $"keel-baseline-{Guid.NewGuid():N}.json");
        var start = new ProcessStartInfo(python) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(script);
        start.ArgumentList.Add("--json");
        start.ArgumentList.Add(output);
        foreach (var shape in shapes)
        {
            start.ArgumentList.Add("--shape");
            start.ArgumentList.Add(shape);
        }
        log.WriteLine($"running the PyTorch baseline: {python} {script}");
        try
        {
            using var process = Process.Start(start)!;
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEnd();
            process.WaitForExit();
            if (process.ExitCode != 0)
            {
                report.BaselineNote = $"{Path.GetFileName(script)} exited with {process.ExitCode}: {LastLine(stderr)}";
                return;
            }
            _ = stdout.Result;
            Merge(File.ReadAllText(output), report);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            report.BaselineNote = $"could not start {python}: {e.Message}";
        }
        finally
        {
            File.Delete(output);
        }
    }

    /// <summary>Adds the baseline timings of <paramref name="json"/> to the matching results.</summary>
    public static void Merge(string json, BenchReport report)
    {
        using var document = JsonDocument.Parse(json);
        foreach (var entry in document.RootElement.EnumerateArray())
        {
            var @case = entry.GetProperty("case").GetString();
            var pass = entry.GetProperty("pass").GetString();
            var result = report.Results.FirstOrDefault(r => r.Case == @case && r.Pass == pass);
            result?.Baselines[entry.GetProperty("impl").GetString()!] = entry.GetProperty("microseconds").GetDouble();
        }
    }

    private static string LastLine(string text) =>
        text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault() ?? "(no output)";
}
