using Keel.Native.Studies;

namespace Keel.Native.Tests.Studies;

/// <summary>Studies end to end on the CPU with tiny models: divergence, resuming an interrupted study, parallel runs.</summary>
public sealed class StudyTests
{
    private static readonly TokenDataset Data = TrainingFixtures.CopyTask();

    /// <summary>A range test of <paramref name="steps"/> steps rising to <paramref name="maxRate"/>.</summary>
    private static StudyRun RangeRun(Architecture architecture, double maxRate, int steps = 30) => new(
        StudyRun.NameOf(architecture, 4, maxRate),
        TrainingFixtures.TinyConfig with { Architecture = architecture },
        TrainingFixtures.TinyOptions with { Steps = steps, WarmupSteps = steps, LearningRate = maxRate });

    private static Study StudyOf(string folder, params StudyRun[] runs) =>
        new(folder, runs, Data, new DivergenceCriteria { Margin = 1.0, Patience = 3 }, () => new CpuDevice());

    [Fact]
    public void ARunBuiltToDivergeStopsAtItsDivergenceAndOneThatDoesNotRunsToTheEnd()
    {
        using var folder = new TempFolder();
        var diverging = RangeRun(Architecture.PostLN, maxRate: 30);
        var stable = RangeRun(Architecture.Keel, maxRate: 1e-3);
        var results = StudyOf(folder.Path, diverging, stable).Run(parallel: 1, cancellation: TestContext.Current.CancellationToken);

        var bad = results[0]!;
        Assert.True(bad.Diverged);
        Assert.NotNull(bad.DivergenceReason);
        Assert.InRange(bad.Steps, bad.DivergedAtStep!.Value, bad.PlannedSteps - 1);
        Assert.Equal(diverging.Options.LearningRateAt(bad.DivergedAtStep.Value), bad.DivergenceLearningRate!.Value, 15);
        Assert.True(bad.DivergenceLearningRate < 30);
        Assert.Null(bad.ValidationLoss);
        Assert.Equal(bad.Steps, bad.Curve.Count);

        var good = results[1]!;
        Assert.False(good.Diverged);
        Assert.Null(good.DivergedAtStep);
        Assert.Equal(30, good.Steps);
        Assert.True(good.ValidationLoss is > 0 and < 10, $"validation {good.ValidationLoss}");
        Assert.True(good.FinalTrainLoss < good.Curve[0].Loss, "the stable run learns");
        // The learning rate rises linearly from max/steps to max.
        Assert.Equal(1e-3 / 30, good.Curve[0].LearningRate, 15);
        Assert.Equal(1e-3, good.Curve[^1].LearningRate, 15);
        foreach (var run in new[] { diverging, stable })
            Assert.True(File.Exists(Path.Combine(folder.Path, Study.RunsFolder, run.Name, Study.ResultFile)));
    }

    [Fact]
    public void ANonFiniteLossStopsTheRunThroughTheDetectorOrTheNanGuard()
    {
        using var folder = new TempFolder();
        // A learning rate of 1e30 overflows the weights within a few steps.
        var exploding = RangeRun(Architecture.Keel, maxRate: 1e30, steps: 20);
        var guarded = exploding with { Name = "guarded", Options = exploding.Options with { MaxConsecutiveBadSteps = 1 } };
        var results = StudyOf(folder.Path, exploding, guarded).Run(parallel: 1, cancellation: TestContext.Current.CancellationToken);

        var detected = results[0]!;
        Assert.Equal(DivergenceReason.NonFiniteLoss, detected.DivergenceReason);
        Assert.False(double.IsFinite(detected.Curve[detected.DivergedAtStep!.Value - 1].Loss));
        // With a guard of one bad step the trainer stops inside that step, before the detector sees it: the NaN guard is
        // the reason, dated to the same step.
        var stopped = results[1]!;
        Assert.Equal(DivergenceReason.NanGuard, stopped.DivergenceReason);
        Assert.Equal(detected.DivergedAtStep, stopped.DivergedAtStep);
        Assert.Equal(detected.DivergenceLearningRate, stopped.DivergenceLearningRate);
    }

    [Fact]
    public void AnInterruptedStudyResumesSkippingFinishedRunsAndRefusesOtherSettings()
    {
        using var folder = new TempFolder();
        StudyRun[] runs = [RangeRun(Architecture.Keel, 1e-2, steps: 12), RangeRun(Architecture.PreLN, 1e-2, steps: 12)];
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        var first = new Recorder(onFinished: stop.Cancel);
        var interrupted = StudyOf(folder.Path, runs).Run(parallel: 1, first, stop.Token);
        Assert.NotNull(interrupted[0]);
        Assert.Null(interrupted[1]);

        var second = new Recorder();
        var resumed = StudyOf(folder.Path, runs).Run(parallel: 1, second, TestContext.Current.CancellationToken);
        Assert.Equal([runs[0].Name], second.Reused);
        Assert.Equal([runs[1].Name], second.Started);
        Assert.Equal(interrupted[0]!.Curve, resumed[0]!.Curve);
        Assert.Equal(12, resumed[1]!.Steps);

        // The same folder with other settings is refused rather than mixed.
        var changed = runs.Select(r => r with { Options = r.Options with { Seed = 99 } }).ToArray();
        var error = Assert.Throws<InvalidDataException>(() => StudyOf(folder.Path, changed).Run(parallel: 1, cancellation: TestContext.Current.CancellationToken));
        Assert.Contains("other settings", error.Message);
    }

    [Fact]
    public void ParallelRunsGiveTheSameLossesAsOneAtATime()
    {
        using var folder = new TempFolder();
        StudyRun[] runs = [RangeRun(Architecture.Keel, 1e-2, steps: 8), RangeRun(Architecture.DeepNorm, 1e-2, steps: 8), RangeRun(Architecture.PostLN, 1e-2, steps: 8)];
        var serial = StudyOf(Path.Combine(folder.Path, "serial"), runs).Run(parallel: 1, cancellation: TestContext.Current.CancellationToken);
        var parallel = StudyOf(Path.Combine(folder.Path, "parallel"), runs).Run(parallel: 3, cancellation: TestContext.Current.CancellationToken);
        for (var i = 0; i < runs.Length; i++) Assert.Equal(serial[i]!.Curve, parallel[i]!.Curve);
        // Same seed, data order and initial random stream for every architecture; different models, so different losses.
        Assert.NotEqual(serial[0]!.Curve[^1].Loss, serial[1]!.Curve[^1].Loss);
    }

    [Fact]
    public void RunsWithTheSameNameAreRefused()
    {
        var run = RangeRun(Architecture.Keel, 1e-2);
        Assert.Throws<ArgumentException>(() => StudyOf("unused", run, run));
    }

    private sealed class Recorder(Action? onFinished = null) : IStudyProgress
    {
        public List<string> Reused { get; } = [];
        public List<string> Started { get; } = [];

        void IStudyProgress.Reused(StudyRunResult result) => Reused.Add(result.Name);
        void IStudyProgress.Started(StudyRun run) => Started.Add(run.Name);
        void IStudyProgress.Stepped(StudyRun run, StepResult step) { }
        void IStudyProgress.Finished(StudyRunResult result) => onFinished?.Invoke();
    }
}
