using CommandLine;
using Keel.Cli.Plots;
using Keel.Distributed.Mpi;
using Keel.Native.Devices;
using Keel.Native.Distributed;
using Keel.Native.Memory;
using Keel.Native.Model;
using Keel.Native.Reference;
using Keel.Native.Training;

namespace Keel.Cli.Commands;

/// <summary>
/// The model, device and budget options <c>train</c> and <c>plan</c> share: the architecture and depth, and the rest of
/// the model (<see cref="ModelShapeOptions"/>).
/// </summary>
internal abstract class ModelOptions : ModelShapeOptions
{
    [Option("arch", HelpText = nameof(HelpTexts.Architecture), ResourceType = typeof(HelpTexts))]
    public Architecture? Architecture { get; init; }

    [Option("layers", HelpText = nameof(HelpTexts.SubLayers), ResourceType = typeof(HelpTexts))]
    public int? SubLayers { get; init; }

    /// <summary>The config these options describe (validated), the library's defaults where none is given, for a vocabulary of <paramref name="vocabulary"/>.</summary>
    public ModelConfig ModelConfig(int vocabulary) => ModelConfig(vocabulary, Architecture, SubLayers);
}

/// <summary>
/// The model options other than the architecture and the depth, with the device and the budget: what <c>train</c>,
/// <c>plan</c> and <c>study</c> (which takes lists of architectures and depths) share. Properties are named as the
/// <see cref="Keel.Native.Model.ModelConfig"/> and <see cref="TrainingOptions"/> fields they set, so that an error
/// naming a field names its option (<see cref="OptionNames"/>); null means not given.
/// </summary>
internal abstract class ModelShapeOptions
{
    [Option("hidden", HelpText = nameof(HelpTexts.Hidden), ResourceType = typeof(HelpTexts))]
    public int? Hidden { get; init; }

    [Option("heads", HelpText = nameof(HelpTexts.Heads), ResourceType = typeof(HelpTexts))]
    public int? Heads { get; init; }

    [Option("kv-heads", HelpText = nameof(HelpTexts.KvHeads), ResourceType = typeof(HelpTexts))]
    public int? KvHeads { get; init; }

    [Option("ffn", HelpText = nameof(HelpTexts.FeedForwardSize), ResourceType = typeof(HelpTexts))]
    public int? FeedForwardSize { get; init; }

    [Option("ffn-kind", HelpText = nameof(HelpTexts.FeedForward), ResourceType = typeof(HelpTexts))]
    public FeedForwardKind? FeedForward { get; init; }

    [Option("norm", HelpText = nameof(HelpTexts.Norm), ResourceType = typeof(HelpTexts))]
    public NormKind? Norm { get; init; }

    [Option("alpha", HelpText = "Override the residual scale alpha of Keel (default L) or DeepNorm (default (2M)^(1/4) = L^(1/4)); refused for PreLN and PostLN, which have none.")]
    public float? Alpha { get; init; }

    [Option("seq", HelpText = nameof(HelpTexts.SequenceLength), ResourceType = typeof(HelpTexts))]
    public int? SequenceLength { get; init; }

    [Option("untied", Default = false, HelpText = "Give the LM head its own matrix instead of the embedding table.")]
    public bool Untied { get; init; }

    [Option("batch", HelpText = nameof(HelpTexts.BatchSize), ResourceType = typeof(HelpTexts))]
    public int? BatchSize { get; init; }

    [Option("device", Default = DeviceChoice.Auto, HelpText = "Auto (GPU if present, else CPU), Cpu, Cuda or Emulated.")]
    public DeviceChoice Device { get; init; } = DeviceChoice.Auto;

    [Option("budget", HelpText = "Device memory the step may use, like 80GiB, 141GB or 512MiB (GB = 10^9 bytes, GiB = 2^30). Default: the GPU's memory.")]
    public string? MemoryBudget { get; init; }

    /// <summary>
    /// The config these options describe with <paramref name="architecture"/> and <paramref name="subLayers"/> (validated),
    /// the library's defaults where none is given, for a vocabulary of <paramref name="vocabulary"/>.
    /// </summary>
    public ModelConfig ModelConfig(int vocabulary, Architecture? architecture, int? subLayers)
    {
        var d = new ModelConfig();
        var config = d with
        {
            VocabularySize = vocabulary,
            Hidden = Hidden ?? d.Hidden,
            Heads = Heads ?? d.Heads,
            KvHeads = KvHeads ?? d.KvHeads,
            FeedForward = FeedForward ?? d.FeedForward,
            SubLayers = subLayers ?? d.SubLayers,
            Norm = Norm ?? d.Norm,
            Architecture = architecture ?? d.Architecture,
            Alpha = Alpha,
            SequenceLength = SequenceLength ?? d.SequenceLength,
            TiedEmbeddings = !Untied,
        };
        // Not given, the FFN width stays the library's rule (3 × hidden).
        return (FeedForwardSize is { } size ? config with { FeedForwardSize = size } : config).Validate();
    }

    /// <summary>The budget in bytes, or null when not given.</summary>
    public long? Budget() => MemoryBudget is { } text ? Parsed(text, ByteSize.Parse, nameof(MemoryBudget)) : null;

    /// <summary><paramref name="parse"/> of <paramref name="text"/>, its error attributed to the option of <paramref name="property"/>.</summary>
    internal static T Parsed<T>(string text, Func<string, T> parse, string property)
    {
        try
        {
            return parse(text);
        }
        catch (ArgumentException e) when (e.ParamName != property)
        {
            throw new ArgumentException(KeelCli.Message(e, null), property, e);
        }
    }
}

[Verb("train", HelpText = "Train a Keel Transformer. With no --data, learns a built-in copy task in about 30 s on a laptop CPU.")]
internal sealed class TrainOptions : ModelOptions
{
    [Option("data", HelpText = nameof(HelpTexts.Data), ResourceType = typeof(HelpTexts))]
    public string? Data { get; init; }

    [Option("tokenizer", HelpText = "Byte (vocabulary 256) or Gpt2 (BPE, vocabulary 50257), for --data. Default Byte.")]
    public TokenizerKind? Tokenizer { get; init; }

    [Option("out", HelpText = "Run folder (metrics.jsonl, loss.png, checkpoint/). Default runs/<date-time>.")]
    public string? Output { get; init; }

    [Option("resume", HelpText = "Continue the run in this folder (or its checkpoint/ folder) exactly where it stopped, with its own model, data and training options; only --device, --memory, --budget, --no-graphs, --zero and --profile may be given with it (and any number of ranks).")]
    public string? Resume { get; init; }

    [Option("steps", HelpText = nameof(HelpTexts.Steps), ResourceType = typeof(HelpTexts))]
    public int? Steps { get; init; }

    [Option("accumulate", HelpText = nameof(HelpTexts.AccumulationSteps), ResourceType = typeof(HelpTexts))]
    public int? AccumulationSteps { get; init; }

    [Option("lr", HelpText = nameof(HelpTexts.LearningRate), ResourceType = typeof(HelpTexts))]
    public double? LearningRate { get; init; }

    [Option("warmup", HelpText = nameof(HelpTexts.WarmupSteps), ResourceType = typeof(HelpTexts))]
    public int? WarmupSteps { get; init; }

    [Option("seed", HelpText = nameof(HelpTexts.Seed), ResourceType = typeof(HelpTexts))]
    public ulong? Seed { get; init; }

    [Option("eval-interval", HelpText = nameof(HelpTexts.EvalInterval), ResourceType = typeof(HelpTexts))]
    public int? EvalInterval { get; init; }

    [Option("checkpoint-interval", HelpText = nameof(HelpTexts.CheckpointInterval), ResourceType = typeof(HelpTexts))]
    public int? CheckpointInterval { get; init; }

    [Option("max-bad-steps", HelpText = nameof(HelpTexts.MaxConsecutiveBadSteps), ResourceType = typeof(HelpTexts))]
    public int? MaxConsecutiveBadSteps { get; init; }

    [Option("profile", Default = false, HelpText = "Print a per-op timing table at the end (CUDA events on the GPU, wall time on the CPU).")]
    public bool Profile { get; init; }

    [Option("memory", HelpText = nameof(HelpTexts.Memory), ResourceType = typeof(HelpTexts))]
    public string? Memory { get; init; }

    [Option("no-graphs", Default = false, HelpText = "On a GPU, launch every op of every step instead of replaying the step as a CUDA graph.")]
    public bool NoGraphs { get; init; }

    [Option("zero", HelpText = nameof(HelpTexts.ZeroStage), ResourceType = typeof(HelpTexts))]
    public int? ZeroStage { get; init; }

    /// <summary>The training options these options describe, defaults filled in (validated as they are set).</summary>
    public TrainingOptions TrainingOptions()
    {
        var d = new TrainingOptions();
        var options = d with
        {
            Steps = Steps ?? d.Steps,
            BatchSize = BatchSize ?? d.BatchSize,
            AccumulationSteps = AccumulationSteps ?? d.AccumulationSteps,
            LearningRate = LearningRate ?? d.LearningRate,
            Seed = Seed ?? d.Seed,
            EvalInterval = EvalInterval ?? d.EvalInterval,
            CheckpointInterval = CheckpointInterval ?? d.CheckpointInterval,
            MaxConsecutiveBadSteps = MaxConsecutiveBadSteps ?? d.MaxConsecutiveBadSteps,
        };
        // Not given, the warm-up stays the library's rule (relative to the steps).
        return WithResources(WarmupSteps is { } warmup ? options with { WarmupSteps = warmup } : options);
    }

    /// <summary><paramref name="options"/> with the memory policy, budget, CUDA graphs and ZeRO stage given here (what a resumed run may change).</summary>
    public TrainingOptions WithResources(TrainingOptions options) => options with
    {
        Memory = Memory is { } text ? Parsed(text, MemoryPolicy.Parse, nameof(Memory)) : options.Memory,
        MemoryBudget = Budget() ?? options.MemoryBudget,
        CudaGraphs = !NoGraphs && options.CudaGraphs,
        ZeroStage = ZeroStage ?? options.ZeroStage,
    };
}

/// <summary><c>keel train</c>: build or resume a run, train it, and say where its files went.</summary>
internal static class TrainCommand
{
    /// <summary>The options that may be given with --resume: they change neither the model nor the numbers.</summary>
    private static readonly string[] ResumeOptions =
        [nameof(TrainOptions.Resume), nameof(TrainOptions.Device), nameof(TrainOptions.Memory), nameof(TrainOptions.MemoryBudget), nameof(TrainOptions.NoGraphs), nameof(TrainOptions.ZeroStage), nameof(TrainOptions.Profile)];

    /// <summary>Trains as one process, or as one rank of the job when an MPI launcher started the process (<see cref="RankedTrainCommand"/>).</summary>
    public static int Run(TrainOptions options, TextWriter output, TextWriter error)
    {
        if (MpiSession.LaunchedBy() is not null) return RankedTrainCommand.Run(options, output, error);
        // Everything the user gave is checked, and the data read, before a device is opened.
        var run = Prepare(options);
        var (opened, profiled) = OpenDevice(options, output, gpu: 0);
        using var device = opened;
        using var trainer = CreateTrainer(run, device, collectives: null, output);
        return Train(trainer, run, device, profiled, output, error);
    }

    /// <summary>The run the options describe (new or resumed), with its data read; everything checked, no device opened.</summary>
    internal static PreparedRun Prepare(TrainOptions options) => options.Resume is not null ? PrepareResume(options) : PrepareNew(options);

    /// <summary>
    /// The device the options ask for (GPU <paramref name="gpu"/> where a GPU is used); with --profile, wrapped in the
    /// profiler, which is also returned so that the caller need not test the device's type to find it.
    /// </summary>
    internal static (IDevice Device, ProfiledDevice? Profiled) OpenDevice(TrainOptions options, TextWriter notices, int gpu)
    {
        var opened = TrainingDevices.Open(options.Device, notices, gpu);
        if (!options.Profile) return (opened, null);
        var profiled = new ProfiledDevice(opened);
        return (profiled, profiled);
    }

    /// <summary>The run's trainer: resumed from its checkpoint, or new and initialized from the seed.</summary>
    internal static Trainer CreateTrainer(PreparedRun run, IDevice device, ICollectives? collectives, TextWriter output)
    {
        if (run.Checkpoint is not null)
        {
            var resumed = Checkpoints.Resume(run.Checkpoint, device, run.Data, options: run.Training, collectives: collectives);
            output.WriteLine($"Resuming {run.Folder} at step {resumed.CompletedSteps} of {resumed.Options.Steps}.");
            return resumed;
        }
        var trainer = new Trainer(device, run.Config, run.Training, run.Data, collectives: collectives);
        trainer.Initialize();
        return trainer;
    }

    /// <summary>
    /// Trains to the end and says where the files went: the header and the progress on <paramref name="output"/> (rank 0's
    /// console, or another rank's log); the plot and the file list only from rank 0; the
    /// per-kernel table when <paramref name="profiled"/> (the device itself, wrapped by --profile) is given.
    /// </summary>
    internal static int Train(Trainer trainer, PreparedRun run, IDevice device, ProfiledDevice? profiled, TextWriter output, TextWriter error)
    {
        var primary = trainer.Rank == 0;
        CreateRunFolder(run.Folder);
        var config = trainer.Model.Config;
        output.WriteLine($"Device  {device.Name}");
        if (trainer.Collectives is { } ranks)
            output.WriteLine($"Ranks   {ranks.Size} (this is rank {ranks.Rank}), {ranks.Description}, {trainer.Model.Plan.Inventory.Sharding}; {trainer.Model.BatchSize} of each micro-batch's {trainer.Options.BatchSize} sequences per rank");
        output.WriteLine($"Model   {config.Architecture}, L = {config.SubLayers} sub-layers (alpha {config.ResidualScale:0.###}), hidden {config.Hidden}, heads {config.Heads}/{config.KvHeads}, " +
                         $"FFN {config.FeedForward} {config.FeedForwardSize}, {config.Norm}Norm, {trainer.Model.Layout.ParameterCount:N0} parameters, {trainer.Model.Precision.Master}/{trainer.Model.Precision.Operand}");
        output.WriteLine($"Data    {Describe(trainer.Data.Source)}: {trainer.Data.Train.Length:N0} training / {trainer.Data.Validation.Length:N0} validation tokens ({trainer.Data.Tokenizer.Kind})");
        var plan = trainer.Model.Plan;
        output.WriteLine($"Memory  {plan.Policy}: {ByteSize.Format(plan.TotalBytes)} planned{(trainer.Ranks > 1 ? " per rank" : "")} (activations {ByteSize.Format(plan.ArenaBytes)}, lower bound {ByteSize.Format(plan.ArenaLowerBound)}), recompute +{100 * plan.RecomputeFraction:0.0}% FLOPs" +
                         (trainer.Options.MemoryBudget is { } budget ? $", budget {ByteSize.Format(budget)}" : ""));
        output.WriteLine($"Graphs  {GraphsLine(trainer, device, profiled is not null)}");
        output.WriteLine($"Train   {trainer.Options.Steps} steps × {trainer.TokensPerStep:N0} tokens, lr {trainer.Options.LearningRate:g3}, warm-up {trainer.Options.WarmupSteps}, seed {trainer.Options.Seed}");
        var loop = new TrainingLoop(trainer, run.Folder, output, interactive: !Console.IsOutputRedirected && ReferenceEquals(output, Console.Out))
        {
            AfterStep = profiled is not null ? _ => profiled.Profile.Flush() : null,
            Evaluating = profiled is not null ? evaluating => profiled.Paused = evaluating : null,
        };
        RunSummary summary;
        try
        {
            summary = loop.Run();
        }
        catch (TrainingDivergedException e)
        {
            // The loss and the norm are global, so every rank stops at the same step; rank 0 says why.
            if (!primary)
            {
                output.WriteLine($"keel: {e.Message}");
                return 1;
            }
            SavePlot(trainer, loop.History, run.Folder);
            error.WriteLine($"keel: {e.Message}");
            output.WriteLine($"Run files in {run.Folder}");
            return 1;
        }
        if (primary) SavePlot(trainer, loop.History, run.Folder);
        output.WriteLine($"Done: loss {summary.FirstLoss:0.0000} -> {summary.LastLoss:0.0000}, validation {summary.ValidationLoss:0.0000}, {summary.TokensPerSecond:N0} tokens/s.");
        if (profiled is not null)
        {
            output.WriteLine($"Profile of {trainer.CompletedSteps} steps ({loop.StepMilliseconds:0} ms), per device op{(device.Kind == DeviceKind.Cuda ? ", timed with CUDA events" : ", wall time")}:");
            profiled.Profile.Write(output, loop.StepMilliseconds);
            if (profiled.KernelLaunches is { } launches)
            {
                output.WriteLine("Per kernel launch (GB/s and TFLOP/s from the bytes and FLOPs each launcher counts):");
                launches.Write(output, loop.StepMilliseconds);
            }
        }
        if (!primary) return 0;
        output.WriteLine($"Run files in {summary.RunDirectory}:");
        output.WriteLine($"  {TrainingLoop.MetricsFile}   per-step metrics");
        output.WriteLine($"  {LossPlot.FileName}        loss curves");
        output.WriteLine($"  {TrainingLoop.CheckpointFolder}/     weights, optimizer state, config (keel sample --checkpoint {summary.Checkpoint})");
        if (trainer.Ranks > 1) output.WriteLine("  rank-K.log     the other ranks' output");
        return 0;
    }

    private static void SavePlot(Trainer trainer, LossHistory history, string folder)
    {
        var config = trainer.Model.Config;
        LossPlot.Save(Path.Combine(folder, LossPlot.FileName),
                      $"keel train: {config.Architecture}, L = {config.SubLayers}, hidden {config.Hidden}, {Path.GetFileName(trainer.Data.Source)}", history);
    }

    private static string GraphsLine(Trainer trainer, IDevice device, bool profiling) =>
        trainer.UsesCudaGraphs ? "on: steps after the first replay one CUDA graph per micro-batch"
        : !trainer.Options.CudaGraphs ? "off (--no-graphs)"
        : profiling ? "off while profiling (every op is launched and timed on its own)"
        : device.GraphCapture is null ? $"off: the {device.Kind} device has no CUDA graphs"
        : "off: ZeRO 2 reduces gradient buckets during the backward, which the graph would capture";

    /// <summary>The data source name that stands for the built-in task.</summary>
    internal const string SyntheticSource = "builtin:copy-task";

    /// <summary>What a run needs before a device is opened: its folder, model, options and data, and the checkpoint it resumes.</summary>
    internal sealed record PreparedRun(string Folder, ModelConfig Config, TrainingOptions Training, TokenDataset Data, string? Checkpoint);

    private static PreparedRun PrepareNew(TrainOptions options)
    {
        var training = options.TrainingOptions();
        var tokenizer = options.Data is null ? TokenizerKind.Byte : options.Tokenizer ?? TokenizerKind.Byte;
        if (options.Data is null && options.Tokenizer is not null)
            throw new ArgumentException("applies to --data only; the built-in copy task is byte-level.", nameof(TrainOptions.Tokenizer));
        var config = options.ModelConfig(TextTokenizers.VocabularySize(tokenizer));
        var folder = Path.GetFullPath(options.Output ?? Path.Combine("runs", DateTime.Now.ToString("yyyyMMdd-HHmmss", System.Globalization.CultureInfo.InvariantCulture)));
        if (File.Exists(folder)) throw new ArgumentException($"{folder} is a file, not a run folder.", nameof(TrainOptions.Output));
        var data = LoadData(options.Data ?? SyntheticSource, tokenizer, training.Seed, training.ValidationFraction);
        data.RequireWindows(config.SequenceLength);
        return new PreparedRun(folder, config, training, data, null);
    }

    private static PreparedRun PrepareResume(TrainOptions options)
    {
        var ignored = OptionNames.Given(options).Where(o => !ResumeOptions.Contains(o.Property)).Select(o => o.Flag).ToList();
        if (ignored.Count > 0)
            throw new ArgumentException($"continues the run with its own model, data and training options; {string.Join(", ", ignored)} cannot be given with it (only --device, --memory, --budget, --no-graphs, --zero and --profile can).", nameof(TrainOptions.Resume));
        var checkpoint = Checkpoints.Locate(options.Resume!);
        var (config, state) = Checkpoints.ReadConfig(checkpoint);
        var data = LoadData(state.DataSource, state.Tokenizer, state.Options.Seed, state.Options.ValidationFraction);
        var parent = Path.GetDirectoryName(checkpoint) ?? checkpoint;
        return new PreparedRun(parent, config, options.WithResources(state.Options), data, checkpoint);
    }

    private static void CreateRunFolder(string folder)
    {
        try
        {
            Directory.CreateDirectory(folder);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"Cannot create the run folder {folder}: {e.Message}", e);
        }
    }

    internal static TokenDataset LoadData(string source, TokenizerKind tokenizer, ulong seed, double validationFraction) =>
        source == SyntheticSource
            ? TokenDataset.FromText(SyntheticTask.Generate(seed, 200_000), TextTokenizers.Create(tokenizer), validationFraction, SyntheticSource)
            : TokenDataset.FromFile(source, TextTokenizers.Create(tokenizer), validationFraction);

    private static string Describe(string source) => source == SyntheticSource ? "built-in copy task (lines word|word)" : source;
}
