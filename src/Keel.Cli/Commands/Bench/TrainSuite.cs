using System.Globalization;
using Keel.Native.Memory;
using Keel.Native.Model;
using Keel.Native.Reference;
using Keel.Native.Training;

namespace Keel.Cli.Commands.Bench;

/// <summary>
/// <c>keel bench train</c>: the median time of a whole training step (forward, backward, gradient norm, AdamW,
/// and the loss read back as training does) for a model config, as tokens/s and model FLOP utilization against
/// the measured bf16 GEMM ceiling, beside the same model in PyTorch eager (<c>perf/baselines/keel_model.py</c>).
/// A case is <c>key=value</c> pairs separated by commas: L (sub-layers), h, heads, kv, ffn, seq, batch, vocab,
/// arch (keel, preln, postln, deepnorm), ffn_kind (swiglu, gelu), norm (rms, layer), memory (a policy: store, selective,
/// every:K, binomial:S, auto), graphs (on, off); unnamed keys keep the defaults of the first case. Each case also logs
/// the host time spent issuing the step (launch overhead; with graphs, one replay), the plan's peak and, on a GPU, the
/// device memory in use as the driver reports it.
/// </summary>
internal sealed class TrainSuite : IBenchmarkSuite
{
    /// <summary>The paper's width (hidden 1024, 16 heads over 8 KV heads, FFN 3072) at two depths.</summary>
    private static readonly string[] DefaultCases =
    [
        "L=24,h=1024,heads=16,kv=8,ffn=3072,seq=1024,batch=8,vocab=50257",
        "L=96,h=1024,heads=16,kv=8,ffn=3072,seq=1024,batch=4,vocab=50257",
    ];

    public string Name => "train";

    public string Description => "a whole training step of a model config: tokens/s and MFU";

    public string? BaselineScript => "keel_model.py";

    public void Run(BenchContext context, BenchReport report)
    {
        foreach (var text in context.Shapes.Count > 0 ? context.Shapes : DefaultCases)
        {
            var (config, batch, memory, graphs) = Parse(text);
            var options = new TrainingOptions { BatchSize = batch, Steps = int.MaxValue / 2, WarmupSteps = 10, EvalInterval = 0, Memory = memory, CudaGraphs = graphs };
            var data = TokenDataset.FromText(SyntheticTask.Generate(1, 20 * (config.SequenceLength + 1) * batch), new ByteTokenizer(), 0.05, "bench");
            using var trainer = new Trainer(context.Device, config, options, data);
            trainer.Initialize();
            var issue = new List<double>();
            var microseconds = context.MedianMicroseconds(_ => issue.Add(trainer.Step().IssueSeconds));
            var flops = trainer.TokensPerStep * KeelModel.TrainingFlopsPerToken(config);
            report.Add(new BenchResult(text, "step", microseconds, 0, flops));
            issue.Sort();
            var issueMicroseconds = issue[issue.Count / 2] * 1e6;
            var plan = trainer.Model.Plan;
            var used = context.Device.QueryMemory()?.UsedBytes is { } bytes ? string.Create(CultureInfo.InvariantCulture, $", device memory in use {bytes / 1e9:0.00} GB ({100.0 * bytes / plan.TotalBytes:0.0}% of the plan)") : "";
            context.Log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{text}: {trainer.TokensPerStep / (microseconds * 1e-6):N0} tokens/s, {flops / (microseconds * 1e-6) / 1e12:0.0} model TFLOP/s, {trainer.AllocatedBytes / 1e9:0.00} GB allocated; ") +
                string.Create(CultureInfo.InvariantCulture,
                $"{plan.Policy} plan {plan.TotalBytes / 1e9:0.00} GB (+{100 * plan.RecomputeFraction:0.0}% FLOPs){used}; host issue {issueMicroseconds:0} µs per step ({100 * issueMicroseconds / microseconds:0.0}% of the step, graphs {(trainer.UsesCudaGraphs ? "on" : "off")})"));
        }
    }

    /// <summary>A case's config and batch size.</summary>
    internal static (ModelConfig Config, int Batch, MemoryPolicy Memory, bool Graphs) Parse(string text)
    {
        var config = new ModelConfig { VocabularySize = 50257, Hidden = 1024, Heads = 16, KvHeads = 8, FeedForwardSize = 3072, SubLayers = 24, SequenceLength = 1024 };
        var batch = 8;
        var memory = MemoryPolicy.Store;
        var graphs = true;
        foreach (var pair in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var parts = pair.Split('=', 2, StringSplitOptions.TrimEntries);
            if (parts.Length != 2) throw new ArgumentException($"'{pair}' in train case '{text}' is not key=value.", "shape");
            var (key, value) = (parts[0], parts[1]);
            config = key switch
            {
                "L" => config with { SubLayers = Int(value) },
                "h" => config with { Hidden = Int(value) },
                "heads" => config with { Heads = Int(value) },
                "kv" => config with { KvHeads = Int(value) },
                "ffn" => config with { FeedForwardSize = Int(value) },
                "seq" => config with { SequenceLength = Int(value) },
                "vocab" => config with { VocabularySize = Int(value) },
                "arch" => config with { Architecture = Enum.Parse<Architecture>(value, ignoreCase: true) },
                "ffn_kind" => config with { FeedForward = Enum.Parse<FeedForwardKind>(value, ignoreCase: true) },
                "norm" => config with { Norm = Enum.Parse<NormKind>(value, ignoreCase: true) },
                "batch" or "memory" or "graphs" => config,
                _ => throw new ArgumentException($"Unknown key '{key}' in train case '{text}'; keys: L, h, heads, kv, ffn, seq, batch, vocab, arch, ffn_kind, norm, memory, graphs.", "shape"),
            };
            if (key == "batch") batch = Int(value);
            if (key == "memory") memory = MemoryPolicy.Parse(value);
            if (key == "graphs") graphs = value is "on" or "true" ? true : value is "off" or "false" ? false
                : throw new ArgumentException($"graphs={value} in train case '{text}': on or off.", "shape");
        }
        return (config.Validate(), batch, memory, graphs);

        int Int(string value) => int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) ? n
            : throw new ArgumentException($"'{value}' in train case '{text}' is not an integer.", "shape");
    }
}
