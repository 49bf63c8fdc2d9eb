using Keel.Native.Studies;

namespace Keel.Native.Tests.Studies;

/// <summary><c>keel study</c> end to end on the CPU with tiny models: its files, resuming, and its messages for bad input.</summary>
public sealed class StudyCliTests
{
    private static readonly string[] Tiny = ["--device", "cpu", "--hidden", "16", "--heads", "2", "--kv-heads", "1", "--seq", "16", "--batch", "4", "--divergence-patience", "3"];

    [Theory]
    [InlineData("lr-range", "--max-lr|20", "lr-range.png")]
    [InlineData("lr-sweep", "--lrs|1e-3,30", "lr-sweep.png")]
    [InlineData("depth", "--layers|2,4", "depth.png")]
    public void EachStudyWritesItsTableJsonAndPlot(string kind, string option, string plot)
    {
        using var folder = new TempFolder();
        var (code, output, error) = Run(["study", kind, .. Tiny, "--arch", "keel,postln", "--steps", "20", "--out", folder.Path, .. option.Split('|')]);
        Assert.True(code == 0, error + output);
        Assert.Contains("ETA", output);
        var markdown = File.ReadAllText(Path.Combine(folder.Path, "study.md"));
        Assert.Contains($"keel study {kind}", markdown);
        Assert.Contains("| run | arch | L |", markdown);
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(folder.Path, "study.json")))!.AsObject();
        Assert.Equal(kind, json["kind"]!.GetValue<string>());
        var runs = json["runs"]!.AsArray();
        Assert.Equal(kind == "lr-range" ? 2 : 4, runs.Count);
        foreach (var run in runs)
        {
            Assert.True(File.Exists(Path.Combine(folder.Path, Study.RunsFolder, run!["name"]!.GetValue<string>(), Study.ResultFile)));
            Assert.Contains(run["name"]!.GetValue<string>(), output);
        }
        var png = File.ReadAllBytes(Path.Combine(folder.Path, plot));
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], png[..4]);
        if (kind == "lr-range")
        {
            // Raised to 20, both diverge, and the ordering line ranks them by the rate they diverged at.
            Assert.All(runs, run => Assert.True(run!["diverged"]!.GetValue<bool>()));
            Assert.Matches(@"L = 4, divergence learning rate, highest first: (keel|postln) \d\.\d\de[+-]\d \(lowest loss \d\.\d{4}\) [>=] (keel|postln) \d", output);
        }
        if (kind == "lr-sweep")
        {
            // Peak 30 diverges, 1e-3 does not: the table says which.
            Assert.True(runs.Single(r => r!["name"]!.GetValue<string>() == "postln-L4-lr3e1")!["diverged"]!.GetValue<bool>());
            Assert.False(runs.Single(r => r!["name"]!.GetValue<string>() == "postln-L4-lr1e-3")!["diverged"]!.GetValue<bool>());
        }

        // The same command again finds every run finished and trains nothing.
        (code, output, error) = Run(["study", kind, .. Tiny, "--arch", "keel,postln", "--steps", "20", "--out", folder.Path, .. option.Split('|')]);
        Assert.True(code == 0, error + output);
        Assert.Contains("finished before", output);
        Assert.DoesNotContain("started", output);
    }

    [Theory]
    [InlineData("lr-rage", "", "'lr-rage' is not a study")]
    [InlineData("lr-range", "--lrs|1e-3", "--lrs: applies to lr-sweep studies, not to lr-range")]
    [InlineData("lr-range", "--warmup|5", "--warmup: applies to lr-sweep and depth studies")]
    [InlineData("lr-sweep", "--max-lr|1", "--max-lr: applies to lr-range studies")]
    [InlineData("depth", "", "--layers: lists the depths to compare")]
    [InlineData("depth", "--layers|8,x", "--layers: 'x' in '8,x' is not a valid value")]
    [InlineData("depth", "--layers|8,3", "--layers: SubLayers (3) must be even")]
    [InlineData("lr-range", "--arch|keel,transformer", "--arch: 'transformer' in 'keel,transformer' is not a valid value")]
    [InlineData("lr-range", "--max-lr|-1", "--max-lr: LearningRate must be positive and finite")]
    [InlineData("lr-sweep", "--lrs|1e-3,0", "--lrs: LearningRate must be positive and finite")]
    [InlineData("lr-range", "--parallel|0", "--parallel: Parallel must be positive")]
    [InlineData("lr-range", "--divergence-margin|0", "--divergence-margin: Margin must be positive and finite")]
    [InlineData("lr-range", "--data|/no/such/file.txt", "/no/such/file.txt")]
    public void BadStudyOptionsNameTheOptionBeforeADeviceIsOpened(string kind, string option, string message)
    {
        // Opening the CUDA device fails where there is no GPU: the option's error must come first.
        string[] extra = option.Length == 0 ? [] : option.Split('|');
        var (code, _, error) = Run(["study", kind, "--device", "cuda", .. extra]);
        Assert.Equal(1, code);
        Assert.Contains(message, error);
        Assert.DoesNotContain("CUDA", error);
        Assert.DoesNotContain("   at ", error);
    }

    private static (int Code, string Output, string Error) Run(string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var code = KeelCli.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }
}
