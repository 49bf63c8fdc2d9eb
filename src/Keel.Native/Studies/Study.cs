using System.Diagnostics;
using System.Text.Json;
using Keel.Native.Devices;
using Keel.Native.Training;

namespace Keel.Native.Studies;

/// <summary>What a study reports while it runs (called from the threads that run the runs).</summary>
public interface IStudyProgress
{
    /// <summary>A run was found finished in the study folder and is not run again.</summary>
    void Reused(StudyRunResult result);

    /// <summary>A run starts.</summary>
    void Started(StudyRun run);

    /// <summary>A run finished a step.</summary>
    void Stepped(StudyRun run, StepResult step);

    /// <summary>A run finished (ran all its steps or diverged).</summary>
    void Finished(StudyRunResult result);
}

/// <summary>
/// A set of independent training runs in one folder (<c>runs/NAME/</c> per run: the trainer's <c>metrics.jsonl</c>
/// and plot, and <c>result.json</c> once the run has finished). Every run goes through <see cref="Trainer"/> and
/// <see cref="TrainingLoop"/> as <c>keel train</c> does, watched by a <see cref="DivergenceDetector"/> that stops it
/// at divergence. Runs are independent, so <see cref="Run"/> may run several at once, each on its own device; a run
/// whose <c>result.json</c> is there with the same identity is reused, so an interrupted study resumes where it stopped
/// (a run that was in progress starts again from its first step: runs are deterministic).
/// </summary>
public sealed class Study
{
    /// <summary>The folder of the runs inside the study folder.</summary>
    public const string RunsFolder = "runs";

    /// <summary>A finished run's result file.</summary>
    public const string ResultFile = "result.json";

    private readonly string _folder;
    private readonly TokenDataset _data;
    private readonly DivergenceCriteria _criteria;
    private readonly Func<IDevice> _openDevice;

    /// <summary>A study of <paramref name="runs"/> on <paramref name="data"/>, in <paramref name="folder"/>.</summary>
    /// <param name="folder">The study folder.</param>
    /// <param name="runs">The runs, with unique names.</param>
    /// <param name="data">The data every run trains on (read only, shared), with the tokenizer that made it.</param>
    /// <param name="criteria">When a run counts as diverged.</param>
    /// <param name="openDevice">Opens a device for one run (called once per run, on the run's thread).</param>
    public Study(string folder, IReadOnlyList<StudyRun> runs, TokenDataset data, DivergenceCriteria criteria, Func<IDevice> openDevice)
    {
        ArgumentNullException.ThrowIfNull(folder);
        ArgumentNullException.ThrowIfNull(runs);
        _folder = folder;
        _data = data ?? throw new ArgumentNullException(nameof(data));
        _criteria = criteria ?? throw new ArgumentNullException(nameof(criteria));
        _openDevice = openDevice ?? throw new ArgumentNullException(nameof(openDevice));
        if (runs.Count == 0) throw new ArgumentException("A study needs at least one run.", nameof(runs));
        if (runs.GroupBy(r => r.Name).FirstOrDefault(g => g.Count() > 1) is { } twice)
            throw new ArgumentException($"Two runs are named {twice.Key}.", nameof(runs));
        Runs = runs;
    }

    /// <summary>The runs, in the order results are reported.</summary>
    public IReadOnlyList<StudyRun> Runs { get; }

    /// <summary>The folder of run <paramref name="run"/>.</summary>
    public string RunFolder(StudyRun run) => Path.Combine(_folder, RunsFolder, run.Name);

    /// <summary>
    /// Runs every run not finished yet, <paramref name="parallel"/> at a time, and returns the results in the order of
    /// <see cref="Runs"/>; null for a run that <paramref name="cancellation"/> stopped before it finished.
    /// </summary>
    /// <exception cref="InvalidDataException">A run's folder holds the result of a run with other settings.</exception>
    public IReadOnlyList<StudyRunResult?> Run(int parallel, IStudyProgress? progress = null, CancellationToken cancellation = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(parallel);
        var results = new StudyRunResult?[Runs.Count];
        var pending = new List<int>();
        for (var i = 0; i < Runs.Count; i++)
        {
            results[i] = Finished(Runs[i]);
            if (results[i] is { } done) progress?.Reused(done);
            else pending.Add(i);
        }
        Parallel.ForEach(pending, new ParallelOptions { MaxDegreeOfParallelism = parallel }, i =>
        {
            if (!cancellation.IsCancellationRequested) results[i] = RunOne(Runs[i], progress, cancellation);
        });
        return results;
    }

    /// <summary>The saved result of <paramref name="run"/> when it finished in an earlier invocation; null otherwise.</summary>
    private StudyRunResult? Finished(StudyRun run)
    {
        var path = Path.Combine(RunFolder(run), ResultFile);
        if (!File.Exists(path)) return null;
        StudyRunResult? result;
        try
        {
            result = JsonSerializer.Deserialize<StudyRunResult>(File.ReadAllText(path), StudyJson.Options);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path} is not a study run result ({e.Message}); delete it to run {run.Name} again.", e);
        }
        if (result is null || result.Identity != run.Identity(_data.Source, _data.Tokenizer.Kind, _criteria))
            throw new InvalidDataException($"{path} is the result of a run with other settings (model, training options, data or divergence criteria); give the study another folder, or delete {RunFolder(run)} to run it again.");
        return result;
    }

    /// <summary>Trains <paramref name="run"/> from its first step; null when cancelled before it finished.</summary>
    private StudyRunResult? RunOne(StudyRun run, IStudyProgress? progress, CancellationToken cancellation)
    {
        var folder = RunFolder(run);
        // What an interrupted invocation left of this run is redone from the start.
        if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        Directory.CreateDirectory(folder);
        progress?.Started(run);
        var clock = Stopwatch.StartNew();
        var detector = new DivergenceDetector(_criteria);
        var curve = new List<StudyPoint>(run.Options.Steps);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        using var device = _openDevice();
        using var trainer = new Trainer(device, run.Config, run.Options, _data);
        trainer.Initialize();
        var loop = new TrainingLoop(trainer, folder, TextWriter.Null, interactive: false)
        {
            SaveCheckpoints = false,
            AfterStep = step =>
            {
                curve.Add(new StudyPoint(step.Step, step.LearningRate, step.Loss));
                if (detector.Observe(step)) stop.Cancel();
                progress?.Stepped(run, step);
            },
        };
        RunSummary? summary = null;
        try
        {
            summary = loop.Run(stop.Token);
        }
        catch (TrainingDivergedException)
        {
            var first = trainer.CompletedSteps - trainer.ConsecutiveBadSteps + 1;
            detector.NanGuardTripped(first, run.Options.LearningRateAt(first));
        }
        if (!detector.Diverged && trainer.CompletedSteps < run.Options.Steps) return null;
        var result = Summarize(run, detector, curve, detector.Diverged ? null : summary?.ValidationLoss, clock.Elapsed.TotalSeconds, trainer.TokensPerStep);
        AtomicFile.WriteText(Path.Combine(folder, ResultFile), JsonSerializer.Serialize(result, StudyJson.Options));
        progress?.Finished(result);
        return result;
    }

    private StudyRunResult Summarize(StudyRun run, DivergenceDetector detector, List<StudyPoint> curve, double? validation, double seconds, int tokensPerStep)
    {
        var finite = curve.Where(p => double.IsFinite(p.Loss)).ToList();
        StudyPoint? best = finite.Count > 0 ? finite.MinBy(p => p.Loss) : null;
        var tail = curve.Skip(curve.Count - Math.Max(1, curve.Count / 10)).Select(p => p.Loss).ToList();
        var final = tail.Count > 0 ? tail.Average() : double.NaN;
        return new StudyRunResult
        {
            Name = run.Name,
            Architecture = run.Config.Architecture,
            SubLayers = run.Config.SubLayers,
            PeakLearningRate = run.Options.LearningRate,
            PlannedSteps = run.Options.Steps,
            Steps = curve.Count,
            Diverged = detector.Diverged,
            DivergenceReason = detector.Reason,
            DivergedAtStep = detector.Diverged ? detector.Step : null,
            DivergenceLearningRate = detector.Diverged ? detector.LearningRate : null,
            MinimumLoss = best?.Loss,
            LearningRateAtMinimum = best?.LearningRate,
            FinalTrainLoss = double.IsFinite(final) ? final : null,
            ValidationLoss = validation is { } v && double.IsFinite(v) ? v : null,
            Seconds = seconds,
            TokensPerSecond = seconds > 0 ? (double)curve.Count * tokensPerStep / seconds : 0,
            Identity = run.Identity(_data.Source, _data.Tokenizer.Kind, _criteria),
            Curve = curve,
        };
    }
}
