using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using CommandLine;
using Keel.Native.Model;
using Keel.Native.Training;

namespace Keel.Cli.Commands;

[Verb("bench", HelpText = "Benchmarks. 'keel bench train': tokens/s and model FLOP utilization of a training step, beside the same model in PyTorch eager (perf/baselines/keel_model.py) in the same job.")]
internal sealed class BenchOptions : ModelOptions
{
    [Value(0, MetaName = "what", Required = true, HelpText = "What to benchmark: train.")]
    public string What { get; init; } = "";

    [Option("steps", Default = 20, HelpText = "Timed training steps.")]
    public int Steps { get; init; } = 20;

    [Option("warmup-steps", Default = 3, HelpText = "Untimed steps first.")]
    public int WarmupSteps { get; init; } = 3;

    [Option("peak-tflops", HelpText = "The device's peak dense bf16 TFLOP/s for MFU (known GPUs are recognized by name).")]
    public double? PeakTflops { get; init; }

    [Option("python", Default = "python3", HelpText = "The Python that runs the PyTorch baseline ('none' to skip it).")]
    public string Python { get; init; } = "python3";

    [Option("baseline", Default = "perf/baselines/keel_model.py", HelpText = "The PyTorch baseline script.")]
    public string Baseline { get; init; } = "perf/baselines/keel_model.py";

    [Option("json", HelpText = "Also write the results as JSON to this file.")]
    public string? Json { get; init; }
}

/// <summary><c>keel bench train</c>: this implementation's training throughput and MFU, and PyTorch's on the same device.</summary>
internal static class BenchCommand
{
    public static int Run(BenchOptions options, TextWriter output, TextWriter error)
    {
        if (options.What != "train")
        {
            error.WriteLine($"keel: unknown benchmark '{options.What}'; 'keel bench train' is the one there is.");
            return 2;
        }
        var config = options.ModelConfig(256);
        var training = new TrainingOptions { BatchSize = options.BatchSize ?? 16, Steps = options.WarmupSteps + options.Steps, WarmupSteps = 1, EvalInterval = 0 };
        var data = TokenDataset.FromText(SyntheticTask.Generate(1, Math.Max(200_000, 4 * (config.SequenceLength + 1) * 20)), new ByteTokenizer(), 0.1, TrainCommand.SyntheticSource);
        using var device = TrainingDevices.Open(options.Device);
        using var trainer = new Trainer(device, config, training, data, TokenizerKind.Byte);
        trainer.Initialize();
        for (var i = 0; i < options.WarmupSteps; i++) trainer.Step();
        device.Synchronize();
        var watch = Stopwatch.StartNew();
        for (var i = 0; i < options.Steps; i++) trainer.Step();
        device.Synchronize();
        var seconds = watch.Elapsed.TotalSeconds;
        var tokensPerSecond = (double)trainer.TokensPerStep * options.Steps / seconds;
        var flopsPerToken = KeelModel.TrainingFlopsPerToken(config);
        var peak = options.PeakTflops ?? KnownPeak(device.Name);
        var keel = Result("keel.native", device.Name, tokensPerSecond, flopsPerToken, peak, seconds / options.Steps);

        output.WriteLine($"Model: {config.Architecture} L={config.SubLayers} hidden={config.Hidden} heads={config.Heads}/{config.KvHeads} ffn={config.FeedForwardSize} seq={config.SequenceLength} batch={training.BatchSize}; {flopsPerToken / 1e6:0.00} MFLOP/token");
        output.WriteLine(Line(keel));
        var results = new JsonArray { keel };
        var baseline = RunBaseline(options, config, training.BatchSize, peak, error);
        if (baseline is not null)
        {
            output.WriteLine(Line(baseline));
            results.Add(baseline);
            var torchRate = baseline["tokens_per_s"]!.GetValue<double>();
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"keel.native / pytorch tokens/s: {tokensPerSecond / torchRate:0.00}x"));
        }
        if (options.Json is not null)
        {
            var report = new JsonObject { ["config"] = JsonNode.Parse(config.ToJson()), ["batch"] = training.BatchSize, ["results"] = results, ["date"] = DateTime.UtcNow.ToString("o") };
            File.WriteAllText(options.Json, report.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        }
        return 0;
    }

    private static JsonObject Result(string implementation, string device, double tokensPerSecond, double flopsPerToken, double? peakTflops, double stepSeconds) => new()
    {
        ["implementation"] = implementation,
        ["device"] = device,
        ["tokens_per_s"] = tokensPerSecond,
        ["step_ms"] = stepSeconds * 1e3,
        ["model_tflops"] = tokensPerSecond * flopsPerToken / 1e12,
        ["mfu"] = peakTflops is { } p ? tokensPerSecond * flopsPerToken / (p * 1e12) : null,
    };

    private static string Line(JsonObject r)
    {
        var mfu = r["mfu"] is JsonValue v ? v.GetValue<double>().ToString("0.0%", CultureInfo.InvariantCulture) : "n/a (give --peak-tflops)";
        return string.Create(CultureInfo.InvariantCulture,
            $"{r["implementation"]!.GetValue<string>(),-12} {r["tokens_per_s"]!.GetValue<double>(),12:N0} tokens/s  {r["step_ms"]!.GetValue<double>(),9:0.00} ms/step  {r["model_tflops"]!.GetValue<double>(),8:0.000} TFLOP/s  MFU {mfu}");
    }

    /// <summary>Dense bf16 peaks of the GPUs the project runs on (vendor figures without sparsity).</summary>
    private static double? KnownPeak(string name) =>
        name.Contains("H100", StringComparison.Ordinal) || name.Contains("H200", StringComparison.Ordinal) ? 989.4
        : name.Contains("A100", StringComparison.Ordinal) ? 312
        : null;

    private static JsonObject? RunBaseline(BenchOptions options, ModelConfig config, int batch, double? peak, TextWriter error)
    {
        if (options.Python == "none") return null;
        if (!File.Exists(options.Baseline))
        {
            error.WriteLine($"keel: PyTorch baseline {Path.GetFullPath(options.Baseline)} not found; run from the repository root or pass --baseline.");
            return null;
        }
        var arguments = string.Create(CultureInfo.InvariantCulture,
            $"\"{options.Baseline}\" --arch {config.Architecture.ToString().ToLowerInvariant()} --layers {config.SubLayers} --hidden {config.Hidden} --heads {config.Heads} --kv-heads {config.KvHeads} " +
            $"--ffn {config.FeedForwardSize} --ffn-kind {config.FeedForward.ToString().ToLowerInvariant()} --norm {config.Norm.ToString().ToLowerInvariant()} --seq {config.SequenceLength} " +
            $"--vocab {config.VocabularySize} --batch {batch} --steps {options.Steps} --warmup-steps {options.WarmupSteps}{(config.TiedEmbeddings ? "" : " --untied")}" +
            $"{(config.Alpha is { } a ? $" --alpha {a}" : "")}{(peak is { } p ? $" --peak-tflops {p}" : "")} --json");
        try
        {
            using var process = Process.Start(new ProcessStartInfo(options.Python, arguments) { RedirectStandardOutput = true, RedirectStandardError = true })!;
            var stdout = process.StandardOutput.ReadToEnd();
            var stderr = process.StandardError.ReadToEnd();
            process.WaitForExit();
            if (process.ExitCode != 0)
            {
                error.WriteLine($"keel: the PyTorch baseline failed (exit {process.ExitCode}): {stderr.Trim()}");
                return null;
            }
            return JsonNode.Parse(stdout.Trim().Split('\n')[^1]) as JsonObject;
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or JsonException)
        {
            error.WriteLine($"keel: could not run the PyTorch baseline with {options.Python}: {e.Message}");
            return null;
        }
    }
}
