using System.Globalization;
using CommandLine;
using Keel.Cli.Plots;
using Keel.Native.Devices;
using Keel.Native.Memory;
using Keel.Native.Model;
using Keel.Native.Studies;
using Keel.Native.Training;

namespace Keel.Cli.Commands.Study;

[Verb("study", HelpText = "Depth-stability studies: lr-range (the learning rate each architecture diverges at, rising linearly to --max-lr), lr-sweep (final losses over --lrs), depth (validation loss over --layers).")]
internal sealed class StudyOptions : ModelShapeOptions
{
    [Value(0, MetaName = "kind", Required = true, HelpText = "lr-range, lr-sweep or depth.")]
    public string? Kind { get; init; }

    [Option("arch", HelpText = "Architectures, comma-separated: keel, preln, postln, deepnorm. Default all four.")]
    public string? Architecture { get; init; }

    [Option("layers", HelpText = "Depths L (sub-layers), comma-separated, like 8,32,128; depth needs it. Default 4.")]
    public string? SubLayers { get; init; }

    [Option("max-lr", HelpText = "lr-range: the learning rate of the last step (it rises linearly from max-lr/steps). Default 5e-2.")]
    public double? MaxLearningRate { get; init; }

    [Option("lrs", HelpText = "lr-sweep: peak learning rates, comma-separated. Default 1e-3,3e-3,1e-2,3e-2.")]
    public string? LearningRates { get; init; }

    [Option("lr", HelpText = "depth: the peak learning rate. Default 3e-3.")]
    public double? LearningRate { get; init; }

    [Option("data", HelpText = nameof(HelpTexts.Data), ResourceType = typeof(HelpTexts))]
    public string? Data { get; init; }

    [Option("tokenizer", HelpText = "Byte (vocabulary 256) or Gpt2 (BPE, vocabulary 50257), for --data. Default Byte.")]
    public TokenizerKind? Tokenizer { get; init; }

    [Option("out", HelpText = "Study folder (study.md, study.json, plots, runs/); the same command with the same folder resumes a stopped study. Default studies/<kind> (lr-range, lr-sweep or depth).")]
    public string? Output { get; init; }

    [Option("steps", HelpText = nameof(HelpTexts.Steps), ResourceType = typeof(HelpTexts))]
    public int? Steps { get; init; }

    [Option("accumulate", HelpText = nameof(HelpTexts.AccumulationSteps), ResourceType = typeof(HelpTexts))]
    public int? AccumulationSteps { get; init; }

    [Option("warmup", HelpText = nameof(HelpTexts.StudyWarmupSteps), ResourceType = typeof(HelpTexts))]
    public int? WarmupSteps { get; init; }

    [Option("seed", HelpText = nameof(HelpTexts.Seed), ResourceType = typeof(HelpTexts))]
    public ulong? Seed { get; init; }

    [Option("eval-interval", HelpText = "Validation loss every N steps of each run (and at its end; 0: only at the end). Default 0.")]
    public int? EvalInterval { get; init; }

    [Option("max-bad-steps", HelpText = nameof(HelpTexts.MaxConsecutiveBadSteps), ResourceType = typeof(HelpTexts))]
    public int? MaxConsecutiveBadSteps { get; init; }

    [Option("memory", HelpText = "Activation policy of every run (see keel train). Default store.")]
    public string? Memory { get; init; }

    [Option("no-graphs", Default = false, HelpText = "On a GPU, launch every op instead of replaying CUDA graphs.")]
    public bool NoGraphs { get; init; }

    [Option("parallel", HelpText = "Runs at once, each on its own device (on one GPU, give --budget so they fit together). Default 1.")]
    public int? Parallel { get; init; }

    [Option("divergence-margin", HelpText = "Nats above its running minimum that count as a diverging loss. Default 1.")]
    public double? Margin { get; init; }

    [Option("divergence-patience", HelpText = "Consecutive steps above the margin that make a divergence. Default 10.")]
    public int? Patience { get; init; }
}

/// <summary>
/// <c>keel study</c>: builds the runs of a study from the options, checks all of them and reads the data before a device
/// is opened, runs them (<see cref="Keel.Native.Studies.Study"/>) with a progress line for the whole study, and writes
/// the table (terminal and <c>study.md</c>), <c>study.json</c> and the plot into the study folder.
/// </summary>
internal static class StudyCommand
{
    /// <summary>The issue's example sweep.</summary>
    private static readonly double[] DefaultSweep = [1e-3, 3e-3, 1e-2, 3e-2];

    private const double DefaultMaxLearningRate = 5e-2;

    public static int Run(StudyOptions options, IReadOnlyList<string> arguments, TextWriter output, TextWriter error, CancellationToken cancellation = default)
    {
        var plan = Plan(options);
        Directory.CreateDirectory(plan.Folder);
        var notices = output;
        string? deviceName = null;
        var study = new Native.Studies.Study(plan.Folder, plan.Runs, plan.Data, plan.Criteria, () =>
        {
            // The fallback notice of --device auto is worth one line, not one per run.
            var device = TrainingDevices.Open(options.Device, Interlocked.Exchange(ref notices, null));
            Interlocked.CompareExchange(ref deviceName, device.Name, null);
            return device;
        });
        output.WriteLine($"Study   {KindName(plan.Kind)}: {plan.Runs.Count} runs in {plan.Folder}, {options.Parallel ?? 1} at a time");
        output.WriteLine($"Data    {plan.Data.Source}: {plan.Data.Train.Length:N0} training / {plan.Data.Validation.Length:N0} validation tokens ({plan.Data.Tokenizer.Kind})");
        output.WriteLine($"Rule    {plan.Criteria.Describe()}");
        var printer = new StudyProgressPrinter(output, interactive: !Console.IsOutputRedirected && ReferenceEquals(output, Console.Out), plan.Runs);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        IReadOnlyList<StudyRunResult?> results;
        // Ctrl+C stops the runs in progress after their current step; the report still lists what finished, and the same
        // command resumes. A second Ctrl+C ends the process at once.
        using var interrupt = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = !interrupt.IsCancellationRequested;
            interrupt.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        try
        {
            results = study.Run(options.Parallel ?? 1, printer, interrupt.Token);
        }
        catch (AggregateException e) when (e.InnerExceptions.Count > 0)
        {
            // One run failed (not a divergence, which is a result): report the first cause as keel reports any failure.
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
            throw;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
        printer.Close();
        var report = new StudyReport(plan.Kind, plan.Criteria, results, plan.Runs, arguments, deviceName, clock.Elapsed);
        report.WriteTable(output);
        report.Save(plan.Folder);
        var plot = StudyPlots.Save(plan.Folder, plan.Kind, results.OfType<StudyRunResult>().ToList(), $"{plan.Data.Source}, hidden {plan.Runs[0].Config.Hidden}");
        var missing = results.Count(r => r is null);
        if (missing > 0)
        {
            error.WriteLine($"keel: the study stopped with {missing} of {results.Count} runs unfinished; run the same command again to finish them (finished runs are kept).");
            return 1;
        }
        output.WriteLine($"Study files in {plan.Folder}: {StudyReport.MarkdownFile}, {StudyReport.JsonFile}, {Path.GetFileName(plot)}, {Native.Studies.Study.RunsFolder}/");
        return 0;
    }

    /// <summary>Everything a study needs before a device is opened.</summary>
    private sealed record StudyPlan(StudyKind Kind, string Folder, IReadOnlyList<StudyRun> Runs, TokenDataset Data, DivergenceCriteria Criteria);

    private static StudyPlan Plan(StudyOptions options)
    {
        var kind = options.Kind?.ToLowerInvariant() switch
        {
            "lr-range" => StudyKind.LrRange,
            "lr-sweep" => StudyKind.LrSweep,
            "depth" => StudyKind.Depth,
            _ => throw new ArgumentException($"'{options.Kind}' is not a study; choose lr-range, lr-sweep or depth.", nameof(StudyOptions.Kind)),
        };
        RefuseOutsideKind(options, kind);
        var architectures = List(options.Architecture, text => Enum.Parse<Architecture>(text, ignoreCase: true), nameof(StudyOptions.Architecture)) ?? Enum.GetValues<Architecture>();
        var depths = List(options.SubLayers, text => int.Parse(text, CultureInfo.InvariantCulture), nameof(StudyOptions.SubLayers));
        if (depths is null && kind == StudyKind.Depth)
            throw new ArgumentException("lists the depths to compare, like 8,32,128.", nameof(StudyOptions.SubLayers));
        depths ??= [new ModelConfig().SubLayers];
        var rates = kind switch
        {
            StudyKind.LrRange => [options.MaxLearningRate ?? DefaultMaxLearningRate],
            StudyKind.LrSweep => List(options.LearningRates, text => double.Parse(text, CultureInfo.InvariantCulture), nameof(StudyOptions.LearningRates)) ?? DefaultSweep,
            _ => [options.LearningRate ?? new TrainingOptions().LearningRate],
        };
        var defaults = new DivergenceCriteria();
        var criteria = new DivergenceCriteria { Margin = options.Margin ?? defaults.Margin, Patience = options.Patience ?? defaults.Patience };
        var training = TrainingOptionsOf(options, kind);
        var tokenizer = options.Data is null ? TokenizerKind.Byte : options.Tokenizer ?? TokenizerKind.Byte;
        if (options.Data is null && options.Tokenizer is not null)
            throw new ArgumentException("applies to --data only; the built-in copy task is byte-level.", nameof(StudyOptions.Tokenizer));
        var vocabulary = TextTokenizers.VocabularySize(tokenizer);
        var runs = new List<StudyRun>();
        foreach (var depth in depths)
        foreach (var rate in rates)
        foreach (var architecture in architectures.Distinct())
        {
            var config = options.ModelConfig(vocabulary, architecture, depth);
            var runOptions = Rated(training, kind, rate);
            runs.Add(new StudyRun(StudyRun.NameOf(architecture, depth, kind == StudyKind.LrSweep ? rate : null), config, runOptions));
        }
        // A fixed default, so that the same command finds its own unfinished study.
        var folder = Path.GetFullPath(options.Output ?? Path.Combine("studies", KindName(kind)));
        if (File.Exists(folder)) throw new ArgumentException($"{folder} is a file, not a study folder.", nameof(StudyOptions.Output));
        var data = TrainCommand.LoadData(options.Data ?? TrainCommand.SyntheticSource, tokenizer, training.Seed, training.ValidationFraction);
        foreach (var run in runs) data.RequireWindows(run.Config.SequenceLength);
        return new StudyPlan(kind, folder, runs, data, criteria);
    }

    /// <summary>The options every run of the study shares (the learning rate and its schedule are set per run).</summary>
    private static TrainingOptions TrainingOptionsOf(StudyOptions options, StudyKind kind)
    {
        var d = new TrainingOptions();
        if (options.Parallel is <= 0) throw new ArgumentOutOfRangeException(nameof(StudyOptions.Parallel), options.Parallel, "Parallel must be positive.");
        var steps = options.Steps ?? d.Steps;
        var training = d with
        {
            Steps = steps,
            BatchSize = options.BatchSize ?? d.BatchSize,
            AccumulationSteps = options.AccumulationSteps ?? d.AccumulationSteps,
            Seed = options.Seed ?? d.Seed,
            EvalInterval = options.EvalInterval ?? 0,
            MaxConsecutiveBadSteps = options.MaxConsecutiveBadSteps ?? d.MaxConsecutiveBadSteps,
            // A range test's warm-up is the whole run.
            WarmupSteps = kind == StudyKind.LrRange ? steps : options.WarmupSteps ?? TrainingOptions.DefaultWarmupSteps(steps),
            CheckpointInterval = 0,
        };
        return training with
        {
            Memory = options.Memory is { } text ? ModelShapeOptions.Parsed(text, MemoryPolicy.Parse, nameof(StudyOptions.Memory)) : training.Memory,
            MemoryBudget = options.Budget(),
            CudaGraphs = !options.NoGraphs,
        };
    }

    private static TrainingOptions Rated(TrainingOptions training, StudyKind kind, double rate)
    {
        var property = kind switch
        {
            StudyKind.LrRange => nameof(StudyOptions.MaxLearningRate),
            StudyKind.LrSweep => nameof(StudyOptions.LearningRates),
            _ => nameof(StudyOptions.LearningRate),
        };
        return ModelShapeOptions.Parsed(rate.ToString("R", CultureInfo.InvariantCulture), _ => training with { LearningRate = rate }, property);
    }

    /// <summary>Options that belong to another kind of study are refused rather than silently ignored.</summary>
    private static void RefuseOutsideKind(StudyOptions options, StudyKind kind)
    {
        (string Property, bool Given, StudyKind[] Kinds)[] specific =
        [
            (nameof(StudyOptions.MaxLearningRate), options.MaxLearningRate is not null, [StudyKind.LrRange]),
            (nameof(StudyOptions.LearningRates), options.LearningRates is not null, [StudyKind.LrSweep]),
            (nameof(StudyOptions.LearningRate), options.LearningRate is not null, [StudyKind.Depth]),
            (nameof(StudyOptions.WarmupSteps), options.WarmupSteps is not null, [StudyKind.LrSweep, StudyKind.Depth]),
        ];
        foreach (var (property, given, kinds) in specific)
            if (given && !kinds.Contains(kind))
                throw new ArgumentException($"applies to {string.Join(" and ", kinds.Select(KindName))} studies, not to {KindName(kind)}.", property);
    }

    /// <summary>A comma-separated list parsed item by item; null when not given; an item that does not parse names the option.</summary>
    private static T[]? List<T>(string? text, Func<string, T> parse, string property)
    {
        if (text is null) return null;
        var items = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (items.Length == 0) throw new ArgumentException("lists no value.", property);
        return items.Select(item =>
        {
            try
            {
                return parse(item);
            }
            catch (Exception e) when (e is FormatException or ArgumentException or OverflowException)
            {
                throw new ArgumentException($"'{item}' in '{text}' is not a valid value.", property, e);
            }
        }).ToArray();
    }

    internal static string KindName(StudyKind kind) => kind switch
    {
        StudyKind.LrRange => "lr-range",
        StudyKind.LrSweep => "lr-sweep",
        _ => "depth",
    };
}
