using CommandLine;
using Keel.Native.Memory;
using Keel.Native.Model;
using Keel.Native.Reference;
using Keel.Native.Training;

namespace Keel.Cli.Commands;

/// <summary>The model, device and budget options <c>train</c> and <c>plan</c> share.</summary>
internal abstract class ModelOptions
{
    [Option("arch", Default = Architecture.Keel, HelpText = "Architecture: Keel, PreLN, PostLN or DeepNorm.")]
    public Architecture Architecture { get; init; } = Architecture.Keel;

    [Option("layers", HelpText = "L, the number of sub-layers (attention and FFN counted separately; even). Default 4.")]
    public int? SubLayers { get; init; }

    [Option("hidden", HelpText = "Hidden size. Default 64.")]
    public int? Hidden { get; init; }

    [Option("heads", HelpText = "Attention heads. Default 4.")]
    public int? Heads { get; init; }

    [Option("kv-heads", HelpText = "Key/value heads (grouped-query). Default 2.")]
    public int? KvHeads { get; init; }

    [Option("ffn", HelpText = "FFN intermediate size. Default 3 × hidden.")]
    public int? FeedForwardSize { get; init; }

    [Option("ffn-kind", Default = FeedForwardKind.SwiGlu, HelpText = "SwiGlu or Gelu.")]
    public FeedForwardKind FeedForward { get; init; } = FeedForwardKind.SwiGlu;

    [Option("norm", Default = NormKind.Rms, HelpText = "Rms or Layer.")]
    public NormKind Norm { get; init; } = NormKind.Rms;

    [Option("alpha", HelpText = "Override the residual scale alpha (Keel default: L).")]
    public float? Alpha { get; init; }

    [Option("seq", HelpText = "Sequence length. Default 64.")]
    public int? SequenceLength { get; init; }

    [Option("untied", Default = false, HelpText = "Give the LM head its own matrix instead of the embedding table.")]
    public bool Untied { get; init; }

    [Option("batch", HelpText = "Sequences per micro-batch. Default 16.")]
    public int? BatchSize { get; init; }

    [Option("device", Default = DeviceChoice.Auto, HelpText = "Auto (GPU if present, else CPU), Cpu, Cuda or Emulated.")]
    public DeviceChoice Device { get; init; } = DeviceChoice.Auto;

    [Option("budget", HelpText = "Device memory the step may use, like 80GiB, 141GB or 512MiB (GB = 10^9 bytes, GiB = 2^30). Default: the GPU's memory.")]
    public string? Budget { get; init; }

    public ModelConfig ModelConfig(int vocabulary)
    {
        var defaults = new ModelConfig();
        var hidden = Hidden ?? defaults.Hidden;
        return new ModelConfig
        {
            VocabularySize = vocabulary,
            Hidden = hidden,
            Heads = Heads ?? defaults.Heads,
            KvHeads = KvHeads ?? defaults.KvHeads,
            FeedForwardSize = FeedForwardSize ?? 3 * hidden,
            FeedForward = FeedForward,
            SubLayers = SubLayers ?? defaults.SubLayers,
            Norm = Norm,
            Architecture = Architecture,
            Alpha = Alpha,
            SequenceLength = SequenceLength ?? defaults.SequenceLength,
            TiedEmbeddings = !Untied,
        };
    }
}

[Verb("train", HelpText = "Train a Keel Transformer. With no --data, learns a built-in copy task in about a minute on a laptop CPU.")]
internal sealed class TrainOptions : ModelOptions
{
    [Option("data", HelpText = "A UTF-8 text file to train on (the last 10% held out for validation).")]
    public string? Data { get; init; }

    [Option("tokenizer", Default = TokenizerKind.Byte, HelpText = "Byte (vocabulary 256) or Gpt2 (BPE, vocabulary 50257).")]
    public TokenizerKind Tokenizer { get; init; } = TokenizerKind.Byte;

    [Option("out", HelpText = "Run folder (metrics.jsonl, loss.png, checkpoint/). Default runs/<date-time>.")]
    public string? Output { get; init; }

    [Option("resume", HelpText = "Continue the run in this folder (or its checkpoint/ folder) exactly where it stopped.")]
    public string? Resume { get; init; }

    [Option("steps", HelpText = "Optimizer steps. Default 600.")]
    public int? Steps { get; init; }

    [Option("accumulate", HelpText = "Micro-batches per optimizer step. Default 1.")]
    public int? AccumulationSteps { get; init; }

    [Option("lr", HelpText = "Peak learning rate. Default 3e-3.")]
    public double? LearningRate { get; init; }

    [Option("warmup", HelpText = "Warm-up steps. Default 50.")]
    public int? WarmupSteps { get; init; }

    [Option("seed", HelpText = "Seed of the initialization and the batches. Default 1.")]
    public ulong? Seed { get; init; }

    [Option("eval-interval", HelpText = "Validation loss every N steps. Default 50.")]
    public int? EvalInterval { get; init; }

    [Option("checkpoint-interval", HelpText = "Checkpoint every N steps (always at the end). Default: only at the end.")]
    public int? CheckpointInterval { get; init; }

    [Option("max-bad-steps", HelpText = "Stop after this many consecutive NaN/Inf steps. Default 5.")]
    public int? MaxBadSteps { get; init; }

    [Option("profile", Default = false, HelpText = "Print a per-op timing table at the end (CUDA events on the GPU, wall time on the CPU).")]
    public bool Profile { get; init; }

    [Option("memory", Default = "store", HelpText = "Activation policy: store (keep everything), selective (recompute norms and activations), every:K (keep x every K sub-layers, recompute segments), binomial:S (Revolve with S slots), or auto (least recompute that fits --budget). keel plan shows them all.")]
    public string Memory { get; init; } = "store";

    [Option("no-graphs", Default = false, HelpText = "On a GPU, launch every op of every step instead of replaying the step as a CUDA graph.")]
    public bool NoGraphs { get; init; }

    public TrainingOptions TrainingOptions()
    {
        var d = new TrainingOptions();
        return d with
        {
            Steps = Steps ?? d.Steps,
            BatchSize = BatchSize ?? d.BatchSize,
            AccumulationSteps = AccumulationSteps ?? d.AccumulationSteps,
            LearningRate = LearningRate ?? d.LearningRate,
            WarmupSteps = WarmupSteps ?? d.WarmupSteps,
            Seed = Seed ?? d.Seed,
            EvalInterval = EvalInterval ?? d.EvalInterval,
            CheckpointInterval = CheckpointInterval ?? d.CheckpointInterval,
            MaxConsecutiveBadSteps = MaxBadSteps ?? d.MaxConsecutiveBadSteps,
            Memory = MemoryPolicy.Parse(Memory),
            MemoryBudget = Budget is null ? null : ByteSize.Parse(Budget),
            CudaGraphs = !NoGraphs,
        };
    }
}

/// <summary><c>keel train</c>: build or resume a run, train it, and say where its files went.</summary>
internal static class TrainCommand
{
    public static int Run(TrainOptions options, TextWriter output, TextWriter error)
    {
        using var device = ProfiledDevice.Wrap(TrainingDevices.Open(options.Device, output), options.Profile);
        Trainer trainer;
        string runDirectory;
        if (options.Resume is not null)
        {
            var (folder, checkpoint) = ResolveResume(options.Resume);
            var (_, state) = Checkpoints.ReadConfig(checkpoint);
            var data = LoadData(state.DataSource, state.Tokenizer, state.Options.Seed, state.Options.ValidationFraction);
            trainer = Checkpoints.Resume(checkpoint, device, data);
            runDirectory = folder;
            output.WriteLine($"Resuming {folder} at step {trainer.CompletedSteps} of {trainer.Options.Steps}.");
        }
        else
        {
            var training = options.TrainingOptions();
            var tokenizer = options.Data is null ? TokenizerKind.Byte : options.Tokenizer;
            var data = LoadData(options.Data is null ? SyntheticSource : options.Data, tokenizer, training.Seed, training.ValidationFraction);
            var config = options.ModelConfig(TextTokenizers.VocabularySize(tokenizer));
            trainer = new Trainer(device, config, training, data, tokenizer);
            trainer.Initialize();
            runDirectory = Path.GetFullPath(options.Output ?? Path.Combine("runs", DateTime.Now.ToString("yyyyMMdd-HHmmss", System.Globalization.CultureInfo.InvariantCulture)));
        }
        using (trainer)
        {
            var config = trainer.Model.Config;
            output.WriteLine($"Device  {device.Name}");
            output.WriteLine($"Model   {config.Architecture}, L = {config.SubLayers} sub-layers (alpha {config.ResidualScale:0.###}), hidden {config.Hidden}, heads {config.Heads}/{config.KvHeads}, " +
                             $"FFN {config.FeedForward} {config.FeedForwardSize}, {config.Norm}Norm, {trainer.Model.Layout.ParameterCount:N0} parameters, {trainer.Model.Precision.Master}/{trainer.Model.Precision.Operand}");
            output.WriteLine($"Data    {Describe(trainer.Data.Source)}: {trainer.Data.Train.Length:N0} training / {trainer.Data.Validation.Length:N0} validation tokens ({trainer.Tokenizer})");
            var plan = trainer.Model.Plan;
            output.WriteLine($"Memory  {plan.Policy}: {ByteSize.Format(plan.TotalBytes)} planned (activations {ByteSize.Format(plan.ArenaBytes)}, lower bound {ByteSize.Format(plan.Arena.LowerBound)}), recompute +{100 * plan.RecomputeFraction:0.0}% FLOPs" +
                             (trainer.Options.MemoryBudget is { } budget ? $", budget {ByteSize.Format(budget)}" : ""));
            output.WriteLine($"Graphs  {GraphsLine(trainer, device)}");
            output.WriteLine($"Train   {trainer.Options.Steps} steps × {trainer.TokensPerStep:N0} tokens, lr {trainer.Options.LearningRate:g3}, warm-up {trainer.Options.WarmupSteps}, seed {trainer.Options.Seed}");
            var loop = new TrainingLoop(trainer, runDirectory, output, interactive: !Console.IsOutputRedirected && ReferenceEquals(output, Console.Out))
            {
                AfterStep = device is ProfiledDevice p ? _ => p.Profile.Flush() : null,
                Evaluating = device is ProfiledDevice q ? evaluating => q.Paused = evaluating : null,
            };
            RunSummary summary;
            try
            {
                summary = loop.Run();
            }
            catch (TrainingDivergedException e)
            {
                error.WriteLine($"keel: {e.Message}");
                output.WriteLine($"Run files in {runDirectory}");
                return 1;
            }
            output.WriteLine($"Done: loss {summary.FirstLoss:0.0000} -> {summary.LastLoss:0.0000}, validation {summary.ValidationLoss:0.0000}, {summary.TokensPerSecond:N0} tokens/s.");
            if (device is ProfiledDevice profiled)
            {
                output.WriteLine($"Profile of {trainer.CompletedSteps} steps ({loop.StepMilliseconds:0} ms), per device op{(device.Kind == Keel.Native.Devices.DeviceKind.Cuda ? ", timed with CUDA events" : ", wall time")}:");
                profiled.Profile.Write(output, loop.StepMilliseconds);
                if (profiled.KernelLaunches is { } launches)
                {
                    output.WriteLine("Per kernel launch (where the launcher reports its bytes and FLOPs):");
                    launches.Write(output, loop.StepMilliseconds);
                }
            }
            output.WriteLine($"Run files in {summary.RunDirectory}:");
            output.WriteLine($"  {TrainingLoop.MetricsFile}   per-step metrics");
            output.WriteLine($"  {TrainingLoop.PlotFile}        loss curves");
            output.WriteLine($"  {TrainingLoop.CheckpointFolder}/     weights, optimizer state, config (keel sample --checkpoint {summary.Checkpoint})");
        }
        return 0;
    }

    private static string GraphsLine(Trainer trainer, Keel.Native.Devices.IDevice device) =>
        trainer.UsesCudaGraphs ? "on: steps after the first replay one CUDA graph per micro-batch"
        : !trainer.Options.CudaGraphs ? "off (--no-graphs)"
        : device is ProfiledDevice ? "off while profiling (every op is timed on its own)"
        : $"off: the {device.Kind} device has no CUDA graphs";

    /// <summary>The data source name that stands for the built-in task.</summary>
    internal const string SyntheticSource = "builtin:copy-task";

    internal static TokenDataset LoadData(string source, TokenizerKind tokenizer, ulong seed, double validationFraction) =>
        source == SyntheticSource
            ? TokenDataset.FromText(SyntheticTask.Generate(seed, 200_000), TextTokenizers.Create(tokenizer), validationFraction, SyntheticSource)
            : TokenDataset.FromFile(source, TextTokenizers.Create(tokenizer), validationFraction);

    private static string Describe(string source) => source == SyntheticSource ? "built-in copy task (lines word|word)" : source;

    private static (string Folder, string Checkpoint) ResolveResume(string path)
    {
        var full = Path.GetFullPath(path);
        var nested = Path.Combine(full, TrainingLoop.CheckpointFolder);
        return Directory.Exists(nested) ? (full, nested) : (Path.GetDirectoryName(full) ?? full, full);
    }
}
