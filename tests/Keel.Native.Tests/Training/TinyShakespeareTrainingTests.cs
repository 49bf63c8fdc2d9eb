namespace Keel.Native.Tests.Training;

/// <summary>CPU training on real text: a few hundred tokens per step for 300 steps must lower the held-out loss well below its start.</summary>
public sealed class TinyShakespeareTrainingTests
{
    [Fact]
    public void CpuTrainingLowersValidationLoss()
    {
        var path = TrainingFixtures.TinyShakespeareOrSkip();
        var data = TokenDataset.FromFile(path, new ByteTokenizer(), 0.1);
        var config = new ModelConfig { Hidden = 32, Heads = 2, KvHeads = 1, FeedForwardSize = 96, SubLayers = 4, SequenceLength = 32 };
        var options = new TrainingOptions { Steps = 300, BatchSize = 8, WarmupSteps = 20, LearningRate = 1e-2, EvalBatches = 4, Seed = 7 };
        using var device = new CpuDevice();
        using var trainer = new Trainer(device, config, options, data);
        trainer.Initialize();
        var before = trainer.EvaluateValidation();
        StepResult last = default;
        while (trainer.CompletedSteps < options.Steps) last = trainer.Step();
        var after = trainer.EvaluateValidation();

        Assert.InRange(before, Math.Log(256) - 0.1, Math.Log(256) + 0.1);
        Assert.False(last.Skipped);
        // The text's character frequencies alone give 3.31 nats per byte (and its bigrams 2.45): the model must
        // have learned more than which letters are common.
        Assert.True(after < 3.0, $"validation loss {before:0.000} -> {after:0.000}");
    }
}
