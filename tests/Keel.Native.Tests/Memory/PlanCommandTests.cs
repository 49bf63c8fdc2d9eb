namespace Keel.Native.Tests.Memory;

/// <summary><c>keel plan</c> and <c>keel train --memory</c> end to end.</summary>
public sealed class PlanCommandTests
{
    private static readonly string[] PaperModel =
        ["plan", "--device", "cuda", "--layers", "1024", "--hidden", "1024", "--heads", "16", "--kv-heads", "8", "--ffn", "3072", "--seq", "4096", "--batch", "1", "--tokenizer", "gpt2"];

    [Fact]
    public void ThePaperModelFits141GBWithCheckpointing()
    {
        var (code, output, error) = Run([.. PaperModel, "--budget", "141GB"]);
        Assert.True(code == 0, error);
        Assert.Contains("vocabulary 50257 (embedding and head rows padded to 50304), 6.496 B parameters", output);
        Assert.Contains("optimizer state", output);
        Assert.Matches(@"store\s.*\sno\r?\n", output);
        Assert.Matches(@"every:\d+ \(auto\)\s.*\syes", output);
        Assert.Matches(@"auto: every:\d+, peak 1[34]\d\.\d\d GB of 141\.00 GB", output);
    }

    [Fact]
    public void At80GiBItSaysWhatTheModelWouldNeed()
    {
        var (code, output, error) = Run([.. PaperModel, "--budget", "80GiB"]);
        Assert.True(code == 0, error);
        Assert.Contains("Parameters, gradients and optimizer state alone take 116.93 GB", output);
        Assert.Contains("The smallest budget that fits is", output);
        Assert.Matches(@"at most \d+ sub-layers fit", output);
        Assert.DoesNotMatch(@"\(auto\) +\d", output);
    }

    [Fact]
    public void EightRanksAtZeroOneFitThePaperModelIn80GiBEach()
    {
        // The paper's model, 1024 sub-layers at sequence 4096, with a global batch of 8 over 8 GPUs of 80 GiB.
        var (code, output, error) = Run("plan", "--layers", "1024", "--hidden", "1024", "--heads", "16", "--kv-heads", "8", "--ffn", "3072", "--seq", "4096",
                                        "--batch", "8", "--ranks", "8", "--zero", "1", "--budget", "80GiB");
        Assert.True(code == 0, error);
        Assert.Contains("per rank: batch 1 of 8 × sequence 4096", output);
        Assert.Contains("Ranks      8, ZeRO 1: every figure below is one rank's", output);
        Assert.Matches(@"optimizer state\s+6\.44 GB\s+AdamW first and second moments, 1/8", output);
        Assert.Matches(@"gradient shard\s+3\.22 GB", output);
        Assert.Matches(@"auto: every:\d+, peak \d+\.\d\d GB of 85\.90 GB", output);
        // The stage table: replicated state does not fit, sharded does.
        Assert.Matches(@"
0\s+38\.67 GB\s+25\.78 GB\s+51\.56 GB\s+116\.01 GB\s+does not fit", output);
        Assert.Matches(@"
1 \(this plan\)\s+38\.67 GB\s+29\.00 GB\s+6\.44 GB\s+74\.12 GB\s+every:\d+\s", output);
        Assert.Matches(@"
2\s+38\.67 GB\s+3\.\d\d GB\s+6\.44 GB\s+48\.\d\d GB\s+every:\d+\s", output);
    }

    [Fact]
    public void RanksThatDoNotDivideTheBatchOrABadStageAreNamed()
    {
        var (code, _, error) = Run("plan", "--batch", "6", "--ranks", "4");
        Assert.Equal(1, code);
        Assert.Contains("--batch: BatchSize (6) does not divide among 4 ranks", error);
        (code, _, error) = Run("plan", "--ranks", "0");
        Assert.Equal(1, code);
        Assert.Contains("--ranks: Ranks must be positive (got 0).", error);
        (code, _, error) = Run("plan", "--ranks", "2", "--batch", "2", "--zero", "3");
        Assert.Equal(1, code);
        Assert.Contains("--zero: ZeroStage must be 0, 1 or 2 (got 3).", error);
    }

    [Fact]
    public void HelpNamesEveryOptionAndBadInputIsOneClearLine()
    {
        var (_, _, help) = Run(["plan", "--help"]);
        foreach (var option in new[] { "--budget", "--policies", "--layers", "--tokenizer", "--vocab", "--device", "--ranks", "--zero" }) Assert.Contains(option, help);
        var (code, _, error) = Run(["plan", "--budget", "lots"]);
        Assert.Equal(1, code);
        Assert.Contains("'lots' is not a size", error);
        (code, _, error) = Run(["plan", "--policies", "every:0"]);
        Assert.Equal(1, code);
        Assert.Contains("every:K", error);
    }

    [Fact]
    public void TrainRunsThePolicyItIsGivenAndSaysSo()
    {
        using var folder = new TempFolder();
        var (code, output, error) = Run(["train", "--device", "cpu", "--hidden", "16", "--heads", "2", "--kv-heads", "1", "--seq", "16", "--batch", "2", "--layers", "6",
                                         "--steps", "2", "--memory", "every:2", "--out", Path.Combine(folder.Path, "run")]);
        Assert.True(code == 0, error + output);
        Assert.Contains("Memory  every:2:", output);
        Assert.Contains("Graphs  off: the Cpu device has no CUDA graphs", output);
        (code, _, error) = Run(["train", "--device", "cpu", "--steps", "1", "--memory", "auto", "--budget", "1kB"]);
        Assert.Equal(1, code);
        Assert.Contains("No memory policy fits the budget of 1.00 kB", error);
    }

    private static (int Code, string Output, string Error) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var code = KeelCli.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }
}
