using System.Diagnostics;
using System.Globalization;

namespace Keel.Native.Tests.Distributed;

/// <summary>
/// <c>mpirun -np N keel train</c> on the CPU device, end to end: the ranks reproduce the single-process run with the same
/// global batch, repeat themselves bit for bit, agree under every ZeRO stage with the optimizer state sharded N ways, stop
/// together with one message on bad input, and end together when one dies, leaving a checkpoint that resumes.
/// </summary>
public sealed class DataParallelTrainingTests
{
    /// <summary>A tiny model whose global batch (6) divides among 1, 2 and 3 ranks; two micro-batches per step.</summary>
    private static readonly string[] Tiny =
        ["train", "--device", "cpu", "--hidden", "16", "--heads", "2", "--kv-heads", "1", "--seq", "16", "--batch", "6", "--accumulate", "2"];

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void RanksMatchTheSingleProcessLossesAndRepeatThemselvesBitForBit(int ranks)
    {
        MpiLauncher.Require();
        using var folder = new TempFolder();
        string single = Path.Combine(folder.Path, "single"), first = Path.Combine(folder.Path, "first"), second = Path.Combine(folder.Path, "second");
        var output = new StringWriter();
        var error = new StringWriter();
        Assert.True(KeelCli.Run([.. Tiny, "--steps", "6", "--eval-interval", "3", "--out", single], output, error) == 0, error.ToString());
        var job = MpiLauncher.Run(ranks, [.. Tiny, "--steps", "6", "--eval-interval", "3", "--out", first]);
        Assert.True(job.Code == 0, job.All);
        var again = MpiLauncher.Run(ranks, [.. Tiny, "--steps", "6", "--eval-interval", "3", "--out", second]);
        Assert.True(again.Code == 0, again.All);

        var expected = Metrics(single);
        var actual = Metrics(first);
        Assert.Equal(6, expected.Count);
        Assert.Equal(6, actual.Count);
        foreach (var key in new[] { "loss", "grad_norm", "val_loss" })
        {
            for (var i = 0; i < expected.Count; i++)
            {
                if (!expected[i].ContainsKey(key)) continue;
                var (e, a) = (expected[i][key]!.GetValue<double>(), actual[i][key]!.GetValue<double>());
                Assert.True(Math.Abs(a - e) <= 1e-5 * Math.Abs(e), $"step {i + 1} {key}: {a} on {ranks} ranks, {e} in one process");
            }
        }
        Assert.Equal(actual.Select(m => m.ToJsonString()).Select(Numbers), Metrics(second).Select(m => m.ToJsonString()).Select(Numbers));
        Assert.All(actual, m => Assert.Equal(ranks, m["ranks"]!.GetValue<int>()));

        // Rank 0 alone prints and writes the metrics and plot; every other rank logs to its own file.
        Assert.Single(job.Output.Split('\n'), line => line.StartsWith("Run files in", StringComparison.Ordinal));
        Assert.True(File.Exists(Path.Combine(first, Keel.Cli.Plots.LossPlot.FileName)));
        for (var r = 1; r < ranks; r++) Assert.Contains($"Rank    rank {r} of {ranks}", File.ReadAllText(Path.Combine(first, $"rank-{r}.log")));
        Assert.False(File.Exists(Path.Combine(first, "rank-0.log")));
    }

    [Fact]
    public void EveryZeroStageGivesTheSameLossesWithTheOptimizerStateShardedAcrossTheRanks()
    {
        MpiLauncher.Require();
        const int Ranks = 3;
        using var folder = new TempFolder();
        var metrics = new List<JsonObject>[3];
        for (var stage = 0; stage <= 2; stage++)
        {
            var run = Path.Combine(folder.Path, $"zero{stage}");
            // Twelve sub-layers, so that the gradients passing through two bucket slots are fewer than all of them.
            var job = MpiLauncher.Run(Ranks, [.. Tiny, "--layers", "12", "--steps", "4", "--zero", stage.ToString(CultureInfo.InvariantCulture), "--out", run]);
            Assert.True(job.Code == 0, job.All);
            Assert.Contains($"ZeRO {stage}", job.Output);
            metrics[stage] = Metrics(run);
        }
        for (var stage = 1; stage <= 2; stage++)
        {
            for (var i = 0; i < metrics[0].Count; i++)
            {
                double zero = metrics[0][i]["loss"]!.GetValue<double>(), sharded = metrics[stage][i]["loss"]!.GetValue<double>();
                Assert.True(Math.Abs(sharded - zero) <= 1e-6 * Math.Abs(zero), $"step {i + 1}: ZeRO {stage} loss {sharded}, ZeRO 0 {zero}");
            }
        }
        long Bytes(int stage, string key) => metrics[stage][0][key]!.GetValue<long>();
        // Measured per rank: the moments of one shard of three.
        var ratio = (double)Bytes(0, "optimizer_bytes") / Bytes(1, "optimizer_bytes");
        Assert.InRange(ratio, 0.95 * Ranks, 1.0 * Ranks);
        Assert.Equal(Bytes(1, "optimizer_bytes"), Bytes(2, "optimizer_bytes"));
        // ZeRO 2 keeps the embedding and norms, two bucket slots and its gradient shard instead of every gradient.
        Assert.True(Bytes(2, "gradient_bytes") < Bytes(0, "gradient_bytes"), $"ZeRO 2 {Bytes(2, "gradient_bytes")} gradient bytes, ZeRO 0 {Bytes(0, "gradient_bytes")}");
        Assert.True(Bytes(2, "memory_bytes") < Bytes(1, "memory_bytes") && Bytes(1, "memory_bytes") < Bytes(0, "memory_bytes"));
    }

    [Fact]
    public void MismatchedConfigsAndAnIndivisibleBatchStopEveryRankBeforeAnyStep()
    {
        MpiLauncher.Require();
        using var folder = new TempFolder();
        var run = Path.Combine(folder.Path, "run");
        string[] args = [.. Tiny, "--steps", "4", "--out", run];
        var job = MpiLauncher.Run([(1, args), (1, [.. args, "--lr", "0.001"])]);
        Assert.NotEqual(0, job.Code);
        Assert.Contains("keel: rank 1: different training options from rank 0: learning_rate 0.001 (rank 0: 0.003)", job.Error);
        Assert.False(File.Exists(Path.Combine(run, TrainingLoop.MetricsFile)));

        job = MpiLauncher.Run(4, [.. args, "--zero", "1"]);
        Assert.NotEqual(0, job.Code);
        // Every rank finds it; rank 0 says it once, as one process would.
        Assert.Single(job.Error.Split('\n'), line => line.StartsWith("keel: ", StringComparison.Ordinal));
        Assert.Contains("keel: --batch: BatchSize (6) does not divide among 4 ranks", job.Error);
        Assert.False(File.Exists(Path.Combine(run, TrainingLoop.MetricsFile)));

        job = MpiLauncher.Run([(1, args), (1, [.. args, "--data", "/no/such/file.txt"])]);
        Assert.NotEqual(0, job.Code);
        Assert.Contains("keel: rank 1: Data file /no/such/file.txt does not exist.", job.Error);
    }

    [Fact]
    public async Task AKilledRankEndsEveryRankAndTheLastCheckpointLoadsAndResumesOnTheSameOrAnotherNumberOfRanks()
    {
        MpiLauncher.Require();
        using var folder = new TempFolder();
        var run = Path.Combine(folder.Path, "run");
        var state = Path.Combine(run, TrainingLoop.CheckpointFolder, Checkpoints.StateFile);
        var job = MpiLauncher.Start((2, [.. Tiny, "--steps", "300", "--eval-interval", "0", "--checkpoint-interval", "10", "--zero", "1", "--out", run]));
        var cancel = TestContext.Current.CancellationToken;
        var output = job.StandardOutput.ReadToEndAsync(cancel);
        var error = job.StandardError.ReadToEndAsync(cancel);
        var waiting = Stopwatch.StartNew();
        while (!File.Exists(state) && !job.HasExited && waiting.Elapsed < TimeSpan.FromMinutes(2)) Thread.Sleep(50);
        Assert.True(File.Exists(state) && !job.HasExited, $"no checkpoint was written before the run ended: {(job.HasExited ? await output + await error : "")}");
        var pid = int.Parse(File.ReadAllText(Path.Combine(run, "rank-1.log")).Split("pid ")[1].Split(')')[0], CultureInfo.InvariantCulture);
        using (var rank = Process.GetProcessById(pid)) rank.Kill();
        if (!job.WaitForExit(TimeSpan.FromSeconds(30)))
        {
            job.Kill(entireProcessTree: true);
            Assert.Fail("the other rank was still running 30 s after rank 1 was killed");
        }
        Assert.NotEqual(0, job.ExitCode);
        Assert.Contains("rank 1", await output + await error);

        // The last checkpoint is whole, and loads in one process (its moments re-sharded from two ranks to one).
        var (_, saved) = Checkpoints.ReadConfig(run);
        Assert.True(saved.Step >= 10 && saved.Step % 10 == 0, $"checkpoint at step {saved.Step}");
        var data = Keel.Cli.Commands.TrainCommand.LoadData(saved.DataSource, saved.Tokenizer, saved.Options.Seed, saved.Options.ValidationFraction);
        using (var device = new CpuDevice())
        using (var trainer = Checkpoints.Resume(run, device, data))
            Assert.Equal(saved.Step, trainer.CompletedSteps);

        // Resumed on two ranks, it continues from the checkpoint to the end.
        var copy = Path.Combine(folder.Path, "copy");
        CopyFolder(run, copy);
        var resumed = MpiLauncher.Run(2, ["train", "--resume", run, "--device", "cpu"]);
        Assert.True(resumed.Code == 0, resumed.All);
        Assert.Contains($"Resuming {run} at step {saved.Step} of 300.", resumed.Output);
        var steps = Metrics(run).Select(m => m["step"]!.GetValue<int>()).ToList();
        Assert.Equal(Enumerable.Range(1, 300), steps.Distinct().Order());
        Assert.Equal(300, steps[^1]);

        // Resumed on three ranks under ZeRO 2 instead, the moments are re-sharded and the steps are the same.
        var resharded = MpiLauncher.Run(3, ["train", "--resume", copy, "--device", "cpu", "--zero", "2"]);
        Assert.True(resharded.Code == 0, resharded.All);
        Assert.Contains($"Resuming {copy} at step {saved.Step} of 300.", resharded.Output);
        var (two, three) = (LossByStep(run), LossByStep(copy));
        Assert.Equal(300, three.Keys.Max());
        for (var step = saved.Step + 1; step <= saved.Step + 5; step++)
            Assert.True(Math.Abs(three[step] - two[step]) <= 1e-5 * Math.Abs(two[step]), $"step {step}: 3 ranks {three[step]}, 2 ranks {two[step]}");
    }

    /// <summary>Each step's loss as last written (a resumed run writes again the steps after its checkpoint).</summary>
    private static Dictionary<int, double> LossByStep(string run)
    {
        var losses = new Dictionary<int, double>();
        foreach (var m in Metrics(run)) losses[m["step"]!.GetValue<int>()] = m["loss"]!.GetValue<double>();
        return losses;
    }

    private static void CopyFolder(string source, string destination)
    {
        foreach (var directory in Directory.GetDirectories(source, "*", SearchOption.AllDirectories))
            Directory.CreateDirectory(Path.Combine(destination, Path.GetRelativePath(source, directory)));
        Directory.CreateDirectory(destination);
        foreach (var file in Directory.GetFiles(source, "*", SearchOption.AllDirectories))
            File.Copy(file, Path.Combine(destination, Path.GetRelativePath(source, file)));
    }

    [Fact]
    public void CollectivesBenchRunsOverMpiOnHostMemory()
    {
        MpiLauncher.Require();
        using var folder = new TempFolder();
        var job = MpiLauncher.Run(2, ["bench", "collectives", "--host", "--shape", "64KiB", "--repeats", "3", "--warmup", "1", "--out", folder.Path]);
        Assert.True(job.Code == 0, job.All);
        foreach (var op in new[] { "all-reduce", "reduce-scatter", "all-gather" }) Assert.Matches(op + @"\s+65\.54 kB\s+[\d.]+\s+[\d.]+\s+[\d.]+", job.Output);
        Assert.Single(Directory.GetFiles(folder.Path, "collectives-*.json"));
    }

    /// <summary>The metrics lines of a run, in order (a line cut short by a killed run is skipped).</summary>
    private static List<JsonObject> Metrics(string run)
    {
        var lines = new List<JsonObject>();
        foreach (var text in File.ReadAllLines(Path.Combine(run, TrainingLoop.MetricsFile)))
        {
            try
            {
                if (JsonNode.Parse(text) is JsonObject line) lines.Add(line);
            }
            catch (System.Text.Json.JsonException)
            {
            }
        }
        return lines;
    }

    /// <summary>A metrics line without its timings and process size, which differ from run to run.</summary>
    private static string Numbers(string json)
    {
        var line = JsonNode.Parse(json)!.AsObject();
        foreach (var key in new[] { "tokens_per_s", "issue_ms", "process_bytes" }) line.Remove(key);
        return line.ToJsonString();
    }
}
