namespace Keel.Native.Tests.Training;

/// <summary>Reproducibility, exact resume, the NaN/Inf guard, the schedule and evaluation.</summary>
public sealed class TrainerTests
{
    [Fact]
    public void SameSeedGivesTheSameRunBitForBitAndAnotherSeedDoesNot()
    {
        var a = Losses(TrainingFixtures.TinyOptions, 4);
        var b = Losses(TrainingFixtures.TinyOptions, 4);
        var c = Losses(TrainingFixtures.TinyOptions with { Seed = 43 }, 4);
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
    }

    [Fact]
    public void ResumeFromACheckpointGivesTheLossesOfAnUninterruptedRun()
    {
        var options = TrainingFixtures.TinyOptions with { AccumulationSteps = 2 };
        var data = TrainingFixtures.CopyTask();
        using var device = new CpuDevice();
        using var folder = new TempFolder();

        double[] uninterrupted;
        float[] finalParameters;
        using (var trainer = new Trainer(device, TrainingFixtures.TinyConfig, options, data))
        {
            trainer.Initialize();
            uninterrupted = Enumerable.Range(0, options.Steps).Select(_ => trainer.Step().Loss).ToArray();
            finalParameters = TrainingFixtures.Parameters(trainer.Model);
        }

        var resumed = new List<double>();
        using (var first = new Trainer(device, TrainingFixtures.TinyConfig, options, data))
        {
            first.Initialize();
            for (var i = 0; i < 3; i++) resumed.Add(first.Step().Loss);
            Checkpoints.Save(first, folder.Path);
        }
        using (var second = Checkpoints.Resume(folder.Path, device, data))
        {
            Assert.Equal(3, second.CompletedSteps);
            Assert.Equal(options, second.Options);
            while (second.CompletedSteps < options.Steps) resumed.Add(second.Step().Loss);
            Assert.Equal(finalParameters, TrainingFixtures.Parameters(second.Model));
        }
        Assert.Equal(uninterrupted, resumed);
    }

    [Fact]
    public void ABadStepIsSkippedWithoutAnUpdateAndTrainingGoesOn()
    {
        using var device = new CpuDevice();
        using var trainer = new Trainer(device, TrainingFixtures.TinyConfig, TrainingFixtures.TinyOptions, TrainingFixtures.CopyTask());
        trainer.Initialize();
        var good = TrainingFixtures.Parameters(trainer.Model);
        var poisoned = (float[])good.Clone();
        poisoned[trainer.Model.Layout.Tensors[1].Offset] = float.NaN;
        trainer.Model.LoadParameters<float>(poisoned);

        var bad = trainer.Step();
        Assert.True(bad.Skipped);
        Assert.False(double.IsFinite(bad.Loss));
        Assert.Equal(1, trainer.ConsecutiveBadSteps);
        Assert.Equal(0, trainer.Optimizer.UpdateCount);
        Assert.Equal(poisoned, TrainingFixtures.Parameters(trainer.Model));

        trainer.Model.LoadParameters<float>(good);
        var next = trainer.Step();
        Assert.False(next.Skipped);
        Assert.True(double.IsFinite(next.Loss));
        Assert.Equal(0, trainer.ConsecutiveBadSteps);
        Assert.Equal(1, trainer.Optimizer.UpdateCount);
    }

    [Fact]
    public void ConsecutiveBadStepsStopTheRunWithAClearMessage()
    {
        using var device = new CpuDevice();
        var options = TrainingFixtures.TinyOptions with { MaxConsecutiveBadSteps = 3 };
        using var trainer = new Trainer(device, TrainingFixtures.TinyConfig, options, TrainingFixtures.CopyTask());
        trainer.Initialize();
        var poisoned = TrainingFixtures.Parameters(trainer.Model);
        poisoned[0] = float.PositiveInfinity;
        trainer.Model.LoadParameters<float>(poisoned);
        Assert.True(trainer.Step().Skipped);
        Assert.True(trainer.Step().Skipped);
        var e = Assert.Throws<TrainingDivergedException>(() => trainer.Step());
        Assert.Contains("step 3", e.Message);
        Assert.Contains("3 consecutive steps", e.Message);
        Assert.Contains("NaN or infinite", e.Message);
    }

    [Fact]
    public void ScheduleWarmsUpLinearlyThenDecaysByCosineToTheMinimum()
    {
        var options = new TrainingOptions { Steps = 110, WarmupSteps = 10, LearningRate = 1e-3 };
        Assert.Equal(1e-4, options.LearningRateAt(1), 12);
        Assert.Equal(5e-4, options.LearningRateAt(5), 12);
        Assert.Equal(1e-3, options.LearningRateAt(10), 12);
        Assert.Equal(1e-7 + 0.5 * (1e-3 - 1e-7), options.LearningRateAt(60), 12);
        Assert.Equal(1e-7, options.LearningRateAt(110), 15);
        Assert.True(options.LearningRateAt(30) > options.LearningRateAt(31));
    }

    [Fact]
    public void EvaluationReadsNonOverlappingWindowsAndDoesNotDependOnTheBatchSize()
    {
        using var device = new CpuDevice();
        var config = TrainingFixtures.TinyConfig;
        var tokens = new ByteTokenizer().Encode(SyntheticTask.Generate(9, 16 * 7 + 5));
        Assert.Equal(7, Batches.WindowCount(tokens.Length, 16));
        using var one = new KeelModel(device, config, ModelPrecision.Float64, batchSize: 1);
        one.Initialize(5);
        using var three = new KeelModel(device, config, ModelPrecision.Float64, batchSize: 3);
        three.Initialize(5);

        var (loss, counted) = Evaluation.MeanLoss(one, tokens);
        var (loss3, counted3) = Evaluation.MeanLoss(three, tokens);
        Assert.Equal(7 * 15, counted);
        Assert.Equal(counted, counted3);
        Assert.Equal(loss, loss3, 12);

        // The same number window by window: window w predicts tokens w·16+1 .. w·16+15.
        double sum = 0;
        for (var w = 0; w < 7; w++)
        {
            var ids = tokens.AsSpan(w * 16, 16).ToArray();
            var targets = tokens.AsSpan(w * 16 + 1, 15).ToArray().Append(-1).ToArray();
            one.SetBatch(ids, targets);
            one.Forward();
            sum += one.SumLosses();
        }
        Assert.Equal(sum / (7 * 15), loss, 12);
    }

    private static double[] Losses(TrainingOptions options, int steps)
    {
        using var device = new CpuDevice();
        using var trainer = new Trainer(device, TrainingFixtures.TinyConfig, options, TrainingFixtures.CopyTask());
        trainer.Initialize();
        return Enumerable.Range(0, steps).Select(_ => trainer.Step().Loss).ToArray();
    }
}
