using System.Reflection;

namespace Keel.Native.Tests.Training;

/// <summary>Configs that cannot work fail before anything touches the device, naming the field; bad files fail naming the path and the reason.</summary>
public sealed class BadInputTests
{
    [Fact]
    public void HiddenNotDivisibleByHeadsFailsBeforeAllocationNamingTheField()
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => new KeelModel(UntouchableDevice.Create(), TrainingFixtures.TinyConfig with { Hidden = 18, Heads = 4 }, ModelPrecision.Float32, 1));
        Assert.Equal("Heads", e.ParamName);
        Assert.Contains("Hidden (18) is not divisible by Heads (4)", e.Message);
    }

    [Fact]
    public void KvHeadsNotDividingHeadsFailsBeforeAllocationNamingTheField()
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => new KeelModel(UntouchableDevice.Create(), TrainingFixtures.TinyConfig with { Heads = 4, KvHeads = 3 }, ModelPrecision.Float32, 1));
        Assert.Equal("KvHeads", e.ParamName);
    }

    [Fact]
    public void OddSubLayerCountAndOutOfRangeValuesNameTheirField()
    {
        Assert.Equal("SubLayers", Assert.ThrowsAny<ArgumentException>(() => new KeelModel(UntouchableDevice.Create(), TrainingFixtures.TinyConfig with { SubLayers = 5 }, ModelPrecision.Float32, 1)).ParamName);
        Assert.Equal("Hidden", Assert.ThrowsAny<ArgumentException>(() => TrainingFixtures.TinyConfig with { Hidden = 0 }).ParamName);
        Assert.Equal("Alpha", Assert.ThrowsAny<ArgumentException>(() => TrainingFixtures.TinyConfig with { Alpha = float.NaN }).ParamName);
        Assert.Equal("LearningRate", Assert.ThrowsAny<ArgumentException>(() => new TrainingOptions { LearningRate = -1 }).ParamName);
    }

    [Fact]
    public void SequenceLongerThanTheDataFailsBeforeAllocationNamingTheField()
    {
        var data = TokenDataset.FromText("a short text of a few dozen bytes, not enough", new ByteTokenizer(), 0.5, "short.txt");
        var e = Assert.ThrowsAny<ArgumentException>(() => new Trainer(UntouchableDevice.Create(), TrainingFixtures.TinyConfig with { SequenceLength = 32 }, TrainingFixtures.TinyOptions, data));
        Assert.Equal("SequenceLength", e.ParamName);
        Assert.Contains("short.txt", e.Message);
    }

    [Fact]
    public void VocabularySmallerThanTheTokenizerFailsNamingTheField()
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => new Trainer(UntouchableDevice.Create(), TrainingFixtures.TinyConfig with { VocabularySize = 100 }, TrainingFixtures.TinyOptions, TrainingFixtures.CopyTask()));
        Assert.Equal("VocabularySize", e.ParamName);
    }

    [Fact]
    public void MissingAndNonUtf8DataFilesNameThePathAndTheReason()
    {
        using var folder = new TempFolder();
        var missing = Path.Combine(folder.Path, "nope.txt");
        var e = Assert.Throws<FileNotFoundException>(() => TokenDataset.FromFile(missing, new ByteTokenizer(), 0.1));
        Assert.Contains(missing, e.Message);
        var binary = Path.Combine(folder.Path, "binary.txt");
        File.WriteAllBytes(binary, [0x41, 0xFF, 0xFE, 0x42]);
        var invalid = Assert.Throws<InvalidDataException>(() => TokenDataset.FromFile(binary, new ByteTokenizer(), 0.1));
        Assert.Contains(binary, invalid.Message);
        Assert.Contains("UTF-8", invalid.Message);
    }

    [Fact]
    public void MissingTruncatedAndMixedStepCheckpointsNameThePathAndTheReason()
    {
        using var device = new CpuDevice();
        using var folder = new TempFolder();
        var data = TrainingFixtures.CopyTask();
        Assert.Throws<DirectoryNotFoundException>(() => Checkpoints.Resume(Path.Combine(folder.Path, "none"), device, data));

        var first = Path.Combine(folder.Path, "a");
        var second = Path.Combine(folder.Path, "b");
        using (var trainer = new Trainer(device, TrainingFixtures.TinyConfig, TrainingFixtures.TinyOptions, data))
        {
            trainer.Initialize();
            trainer.Step();
            Checkpoints.Save(trainer, first);
            trainer.Step();
            Checkpoints.Save(trainer, second);
        }

        // Data from another tokenizer than the run's.
        var gpt2 = TokenDataset.FromText(SyntheticTask.Generate(3, 2_000), new Gpt2Tokenizer(), 0.1, "copy task");
        var otherTokens = Assert.Throws<ArgumentException>(() => Checkpoints.Resume(first, device, gpt2));
        Assert.Equal("data", otherTokens.ParamName);
        Assert.Contains("trained on Byte tokens", otherTokens.Message);

        // The weights of step 2 beside the state of step 1: files of two checkpoints put together.
        File.Copy(Path.Combine(second, Checkpoints.ModelFile), Path.Combine(first, Checkpoints.ModelFile), overwrite: true);
        var mixed = Assert.Throws<InvalidDataException>(() => Checkpoints.Resume(first, device, data));
        Assert.Contains(Checkpoints.ModelFile, mixed.Message);
        Assert.Contains("different checkpoints", mixed.Message);

        var weights = Path.Combine(second, Checkpoints.ModelFile);
        var bytes = File.ReadAllBytes(weights);
        File.WriteAllBytes(weights, bytes[..(bytes.Length / 2)]);
        var truncated = Assert.Throws<InvalidDataException>(() => Checkpoints.Resume(second, device, data));
        Assert.Contains(weights, truncated.Message);
        Assert.Contains("not a valid safetensors file", truncated.Message);

        var statePath = Path.Combine(second, Checkpoints.StateFile);
        File.WriteAllText(statePath, """{ "step": 2 }""");
        var incomplete = Assert.Throws<InvalidDataException>(() => Checkpoints.ReadConfig(second));
        Assert.Contains(statePath, incomplete.Message);
        Assert.Contains("no options", incomplete.Message);

        File.Delete(statePath);
        var noState = Assert.Throws<FileNotFoundException>(() => Checkpoints.Resume(second, device, data));
        Assert.Contains(Checkpoints.StateFile, noState.Message);
    }

    /// <summary>A device on which any call fails the test: proves validation happens before allocation.</summary>
    public class UntouchableDevice : DispatchProxy
    {
        public static IDevice Create() => Create<IDevice, UntouchableDevice>();

        protected override object? Invoke(MethodInfo? targetMethod, object?[]? args) =>
            throw new Xunit.Sdk.XunitException($"The device was used ({targetMethod?.Name}) before the bad input was reported.");
    }
}
