using Keel.Cli;
using Keel.Native.Tests.Support;

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
    public void HelpNamesEveryOptionAndBadInputIsOneClearLine()
    {
        var (_, _, help) = Run(["plan", "--help"]);
        foreach (var option in new[] { "--budget", "--policies", "--layers", "--tokenizer", "--vocab", "--device" }) Assert.Contains(option, help);
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
