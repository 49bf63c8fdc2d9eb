namespace Keel.Native.Tests.Training;

/// <summary><c>keel train</c>, <c>eval</c> and <c>sample</c> end to end on the CPU, and their messages for bad input.</summary>
public sealed class TrainCliTests
{
    private static readonly string[] Tiny = ["--device", "cpu", "--hidden", "16", "--heads", "2", "--kv-heads", "1", "--seq", "16", "--batch", "4"];

    [Fact]
    public void TrainWritesMetricsPlotAndCheckpointThatEvalSampleAndResumeUse()
    {
        using var folder = new TempFolder();
        var run = Path.Combine(folder.Path, "run");
        var (code, output, error) = Run([.. Tiny, "train", "--out", run, "--steps", "6", "--eval-interval", "3", "--checkpoint-interval", "3"]);
        Assert.True(code == 0, error + output);
        Assert.Contains("Run files in " + run, output);

        var lines = File.ReadAllLines(Path.Combine(run, TrainingLoop.MetricsFile)).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        Assert.Equal([1, 2, 3, 4, 5, 6], lines.Select(l => l["step"]!.GetValue<int>()));
        foreach (var key in new[] { "loss", "lr", "grad_norm", "tokens_per_s", "memory_bytes", "skipped" }) Assert.True(lines[0].ContainsKey(key), key);
        Assert.True(lines[2].ContainsKey("val_loss") && lines[5].ContainsKey("val_loss") && !lines[3].ContainsKey("val_loss"));
        var png = File.ReadAllBytes(Path.Combine(run, Keel.Cli.Plots.LossPlot.FileName));
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], png[..4]);

        var data = Path.Combine(folder.Path, "text.txt");
        File.WriteAllText(data, SyntheticTask.Generate(5, 16 * 10 + 7));
        (code, output, error) = Run(["eval", "--checkpoint", run, "--data", data, "--device", "cpu"]);
        Assert.True(code == 0, error);
        Assert.Contains("10 windows of 16, 150 predicted tokens", output);
        Assert.Contains("perplexity", output);

        (code, output, error) = Run(["sample", "--checkpoint", run, "--tokens", "5", "--device", "cpu"]);
        Assert.True(code == 0, error);
        Assert.StartsWith(SyntheticTask.Prompt, output);

        // Resuming keeps the saved options (6 steps): the finished run is found at its last step and trains no further.
        (code, output, error) = Run(["train", "--resume", run, "--device", "cpu"]);
        Assert.True(code == 0, error);
        Assert.Contains("at step 6 of 6", output);
    }

    [Fact]
    public void ProfileTimesEveryOpAndSaysGraphsAreOffWhileProfiling()
    {
        using var folder = new TempFolder();
        var (code, output, error) = Run([.. Tiny, "train", "--out", Path.Combine(folder.Path, "run"), "--steps", "3", "--profile"]);
        Assert.True(code == 0, error + output);
        Assert.Contains("off while profiling", output);
        Assert.Contains("attention backward", output);
        Assert.Contains("(timed ops)", output);
    }

    [Fact]
    public void AConfigThatCannotWorkIsReportedByFieldWithoutAStackTrace()
    {
        var (code, _, error) = Run(["train", "--device", "cpu", "--hidden", "30", "--heads", "4", "--steps", "1"]);
        Assert.Equal(1, code);
        Assert.Contains("Hidden (30) is not divisible by Heads (4)", error);
        Assert.DoesNotContain("   at ", error);

        (code, _, error) = Run(["train", "--device", "cpu", "--data", "/no/such/file.txt"]);
        Assert.Equal(1, code);
        Assert.Contains("/no/such/file.txt", error);

        (code, _, error) = Run(["eval", "--checkpoint", "/no/such/run", "--data", "/no/such/file.txt", "--device", "cpu"]);
        Assert.Equal(1, code);
        Assert.Contains("/no/such/run", error);
    }

    [Theory]
    [InlineData("--steps|-1", "--steps: Steps must be positive (got -1).")]
    [InlineData("--layers|3", "--layers: SubLayers (3) must be even")]
    [InlineData("--arch|postln|--alpha|2", "--alpha: Alpha (2) does not apply to PostLN")]
    [InlineData("--lr|nan", "--lr: LearningRate must be positive and finite (got NaN).")]
    [InlineData("--memory|every:0", "--memory: Unknown memory policy 'every:0'")]
    [InlineData("--budget|12XB", "--budget: '12XB' is not a size")]
    [InlineData("--budget|0", "--budget: MemoryBudget must be positive (got 0).")]
    [InlineData("--tokenizer|gpt2", "--tokenizer: applies to --data only")]
    [InlineData("--data|/", "is a folder, not a text file")]
    public void BadTrainOptionsNameTheOptionBeforeADeviceIsOpened(string option, string message)
    {
        // Opening the CUDA device fails where there is no GPU: the option's error must come first.
        var (code, output, error) = Run(["train", "--device", "cuda", .. option.Split('|')]);
        Assert.Equal(1, code);
        Assert.Contains("keel: ", error);
        Assert.Contains(message, error);
        Assert.DoesNotContain("CUDA", error);
        Assert.DoesNotContain("   at ", error);
        Assert.Equal("", output);
    }

    [Fact]
    public void BadFilesAndFoldersAreReportedByPathBeforeADeviceIsOpened()
    {
        using var folder = new TempFolder();
        var utf16 = Path.Combine(folder.Path, "utf16.txt");
        File.WriteAllBytes(utf16, [0xFF, 0xFE, (byte)'h', 0, (byte)'i', 0]);
        var (code, _, error) = Run(["train", "--device", "cuda", "--data", utf16]);
        Assert.Equal(1, code);
        Assert.Contains($"{utf16} is not valid UTF-8", error);

        var file = Path.Combine(folder.Path, "a-file");
        File.WriteAllText(file, "");
        (code, _, error) = Run(["train", "--device", "cuda", "--out", file]);
        Assert.Equal(1, code);
        Assert.Contains($"--out: {file} is a file, not a run folder.", error);

        var state = Path.Combine(folder.Path, "checkpoint");
        Directory.CreateDirectory(state);
        File.WriteAllText(Path.Combine(state, Checkpoints.ConfigFile), new Keel.Native.Model.ModelConfig().ToJson());
        File.WriteAllText(Path.Combine(state, Checkpoints.StateFile), """{ "step": 3 }""");
        foreach (var args in new[] { ["train", "--resume", folder.Path], ["sample", "--checkpoint", folder.Path], new[] { "eval", "--checkpoint", folder.Path, "--data", utf16 } })
        {
            (code, _, error) = Run([.. args, "--device", "cuda"]);
            Assert.Equal(1, code);
            Assert.Contains($"{Path.Combine(state, Checkpoints.StateFile)} is not a valid trainer state: it has no options.", error);
            Assert.DoesNotContain("   at ", error);
        }
    }

    [Fact]
    public void ResumeRefusesOptionsItWouldIgnore()
    {
        var (code, _, error) = Run(["train", "--resume", "/no/such/run", "--steps", "9", "--hidden", "8", "--device", "cuda"]);
        Assert.Equal(1, code);
        Assert.Contains("--resume: continues the run with its own model, data and training options; --steps, --hidden cannot be given", error);
    }

    private static (int Code, string Output, string Error) Run(string[] args)
    {
        // Model options go after the verb.
        var verb = Array.FindIndex(args, a => a is "train" or "eval" or "sample");
        string[] ordered = verb > 0 ? [args[verb], .. args[..verb], .. args[(verb + 1)..]] : args;
        var output = new StringWriter();
        var error = new StringWriter();
        var code = KeelCli.Run(ordered, output, error);
        return (code, output.ToString(), error.ToString());
    }
}
