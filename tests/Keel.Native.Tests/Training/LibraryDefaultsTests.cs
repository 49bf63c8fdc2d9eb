using System.Text.Json;
using Keel.Cli.Commands;

namespace Keel.Native.Tests.Training;

/// <summary>
/// The defaults live in the records (the FFN width follows the hidden size, the warm-up follows the steps), survive JSON
/// as they were set, and are the ones <c>keel train</c> uses and its help states.
/// </summary>
public sealed class LibraryDefaultsTests
{
    [Fact]
    public void TheFeedForwardWidthIsThreeTimesHiddenUnlessSet()
    {
        Assert.Equal(192, new ModelConfig().FeedForwardSize);
        var config = new ModelConfig { Hidden = 128 };
        Assert.Equal(384, config.FeedForwardSize);
        Assert.Equal(96, (config with { Hidden = 32 }).FeedForwardSize);
        var fixedWidth = new ModelConfig { FeedForwardSize = 500, Hidden = 128 };
        Assert.Equal(500, (fixedWidth with { Hidden = 32 }).FeedForwardSize);
        Assert.Equal("FeedForwardSize", Assert.ThrowsAny<ArgumentException>(() => config with { FeedForwardSize = 0 }).ParamName);

        Assert.Contains("\"feed_forward_size\": null", config.ToJson());
        Assert.Equal(config, ModelConfig.FromJson(config.ToJson()));
        Assert.Equal(fixedWidth, ModelConfig.FromJson(fixedWidth.ToJson()));
        Assert.Equal(500, ModelConfig.FromJson(fixedWidth.ToJson()).FeedForwardSize);
        var invalid = Assert.Throws<InvalidDataException>(() => ModelConfig.FromJson(config.ToJson().Replace("\"feed_forward_size\": null", "\"feed_forward_size\": -1")));
        Assert.Contains("FeedForwardSize", invalid.Message);
    }

    [Theory]
    [InlineData(600, 50)]
    [InlineData(200, 20)]
    [InlineData(20, 2)]
    [InlineData(5, 1)]
    public void TheWarmupIsFiftyStepsOrATenthOfAShorterRun(int steps, int warmup)
    {
        var options = new TrainingOptions { Steps = steps };
        Assert.Equal(warmup, options.WarmupSteps);
        Assert.Equal(warmup, (new TrainingOptions() with { Steps = steps }).WarmupSteps);
        Assert.Equal(7, (options with { WarmupSteps = 7, Steps = 1000 }).WarmupSteps);
        Assert.Equal(0, (options with { WarmupSteps = 0 }).WarmupSteps);

        var json = JsonSerializer.Serialize(options, ModelConfig.JsonOptions);
        Assert.Contains("\"warmup_steps\": null", json);
        Assert.Equal(options, JsonSerializer.Deserialize<TrainingOptions>(json, ModelConfig.JsonOptions));
        var set = options with { WarmupSteps = 3 };
        Assert.Equal(set, JsonSerializer.Deserialize<TrainingOptions>(JsonSerializer.Serialize(set, ModelConfig.JsonOptions), ModelConfig.JsonOptions));
    }

    [Fact]
    public void KeelTrainReadsItsDefaultsFromTheRecords()
    {
        Assert.Equal(new TrainingOptions(), new TrainOptions().TrainingOptions());
        Assert.Equal(new ModelConfig(), new TrainOptions().ModelConfig(new ModelConfig().VocabularySize));
        Assert.Equal(new TrainingOptions { Steps = 20 }, new TrainOptions { Steps = 20 }.TrainingOptions());
        Assert.Equal(384, new TrainOptions { Hidden = 128 }.ModelConfig(256).FeedForwardSize);
        Assert.Equal(100, new TrainOptions { Hidden = 128, FeedForwardSize = 100 }.ModelConfig(256).FeedForwardSize);
        Assert.Equal(5, new TrainOptions { Steps = 20, WarmupSteps = 5 }.TrainingOptions().WarmupSteps);
    }

    [Fact]
    public void KeelTrainsHelpStatesTheRecordsDefaults()
    {
        var help = new StringWriter();
        Assert.Equal(2, KeelCli.Run(["train", "--help"], TextWriter.Null, help));
        var text = string.Join(" ", help.ToString().Split((char[])[' ', '\n', '\r'], StringSplitOptions.RemoveEmptyEntries));
        var model = new ModelConfig();
        var training = new TrainingOptions();
        foreach (var expected in new[]
                 {
                     $"--hidden Hidden size. Default {model.Hidden}.", $"--layers L, the number", $"even). Default {model.SubLayers}.",
                     $"--heads Attention heads. Default {model.Heads}.", $"Default {model.KvHeads}.", $"Default 3 × hidden ({model.FeedForwardSize} at hidden {model.Hidden})",
                     $"--seq Sequence length. Default {model.SequenceLength}.", $"--batch Sequences per micro-batch, over all ranks under mpirun (each rank takes an equal share). Default {training.BatchSize}.",
                     $"--steps Optimizer steps. Default {training.Steps}.", "--lr Peak learning rate. Default 3e-3.", "cosine decay to 1e-7",
                     $"Default {TrainingOptions.LongRunWarmupSteps}, or a tenth of --steps", $"Default {training.EvalInterval}.", "the last 10% held out",
                     $"--max-bad-steps Stop after this many consecutive NaN/Inf steps. Default {training.MaxConsecutiveBadSteps}.", "Default store.",
                 })
            Assert.Contains(expected, text);
    }
}
