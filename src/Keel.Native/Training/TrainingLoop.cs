using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Keel.Native.Training;

/// <summary>Where a finished run left its results and how it ended.</summary>
/// <param name="RunDirectory">The run's folder.</param>
/// <param name="Checkpoint">The last checkpoint's folder.</param>
/// <param name="Metrics">The metrics JSONL file.</param>
/// <param name="FirstLoss">Training loss of the run's first step (of this invocation).</param>
/// <param name="LastLoss">Training loss of its last step.</param>
/// <param name="ValidationLoss">The final validation loss.</param>
/// <param name="TokensPerSecond">Mean training throughput of this invocation.</param>
public sealed record RunSummary(string RunDirectory, string Checkpoint, string Metrics, double FirstLoss, double LastLoss,
                                double ValidationLoss, double TokensPerSecond);

/// <summary>The loss curves of a run: every step's training loss and the validation losses, in step order.</summary>
/// <param name="Training">(step, mean token loss) of every step, NaN or infinite for a skipped one.</param>
/// <param name="Validation">(step, validation loss) of every evaluation.</param>
public sealed record LossHistory(IReadOnlyList<(int Step, double Loss)> Training, IReadOnlyList<(int Step, double Loss)> Validation);

/// <summary>
/// Runs a <see cref="Trainer"/> to its last step with the files a person wants from a run: a live progress line
/// (step, loss, tokens/s, ETA), <c>metrics.jsonl</c> (one JSON object per step: step, loss, lr, grad_norm,
/// tokens_per_s, issue_ms (host time issuing the passes: launch overhead on a GPU), memory_bytes (allocated by the model
/// and optimizer), planned_bytes (the memory plan's peak), device_used_bytes (on a GPU, in use as the driver reports it),
/// process_bytes (the process's working set), skipped, and val_loss on evaluation steps), the validation loss every
/// <see cref="TrainingOptions.EvalInterval"/> steps, checkpoints, and the loss curves in <see cref="History"/> (which
/// <c>keel train</c> plots; the library draws nothing).
/// <para>
/// In a data-parallel run every rank runs the loop (the steps, evaluations and checkpoints are collective), but only
/// rank 0 writes the metrics and keeps the curves (the CLI plots rank 0's); each rank writes its progress lines to its
/// own <paramref name="output"/> (the console for rank 0, <c>rank-K.log</c> for the others, as the caller chooses).
/// Metrics then also carry ranks, and memory_bytes, optimizer_bytes and gradient_bytes are rank 0's (each rank's are
/// the same, within one shard's padding). Cancellation stops every rank after the same step: the ranks agree on it
/// after each step.
/// </para>
/// </summary>
/// <example>
/// <code>
/// var loop = new TrainingLoop(trainer, "runs/demo", Console.Out, interactive: false);
/// var summary = loop.Run();
/// Console.WriteLine($"{summary.FirstLoss:0.000} -> {summary.LastLoss:0.000}, {loop.History.Validation.Count} evaluations");
/// </code>
/// </example>
public sealed class TrainingLoop(Trainer trainer, string runDirectory, TextWriter output, bool interactive)
{
    /// <summary>The metrics file's name.</summary>
    public const string MetricsFile = "metrics.jsonl";

    /// <summary>The checkpoint folder's name inside the run folder.</summary>
    public const string CheckpointFolder = "checkpoint";

    /// <summary>Wall time of the steps this loop ran, in milliseconds (evaluation and checkpoints excluded).</summary>
    public double StepMilliseconds { get; private set; }

    /// <summary>Called with true before each evaluation and false after it (to pause a profiler); may be null.</summary>
    public Action<bool>? Evaluating { get; init; }

    /// <summary>Called after every step (for profiling, studies or tests); may be null.</summary>
    public Action<StepResult>? AfterStep { get; init; }

    /// <summary>Whether the loop writes checkpoints (default true); a study's runs, which are redone rather than resumed, turn them off.</summary>
    public bool SaveCheckpoints { get; init; } = true;

    /// <summary>
    /// The run's loss curves, earlier invocations of a resumed run included (read back from its metrics file), as far as
    /// <see cref="Run"/> got: complete when it returns or stops with <see cref="TrainingDivergedException"/>. Empty before.
    /// </summary>
    public LossHistory History { get; private set; } = new([], []);

    /// <summary>
    /// Trains until <see cref="TrainingOptions.Steps"/> (or until <paramref name="cancellation"/> is signalled, after the
    /// step in progress), writes the last checkpoint (unless <see cref="SaveCheckpoints"/> is off), and returns where the
    /// results are. When a step fails, the metrics so far are kept and the last checkpoint written before stays the one to
    /// resume from.
    /// </summary>
    /// <exception cref="TrainingDivergedException">Too many bad steps in a row (the metrics are still written, and <see cref="History"/> holds the curves).</exception>
    public RunSummary Run(CancellationToken cancellation = default)
    {
        ArgumentNullException.ThrowIfNull(trainer);
        var primary = trainer.Rank == 0;
        if (primary) Directory.CreateDirectory(runDirectory);
        var options = trainer.Options;
        var metricsPath = Path.Combine(runDirectory, MetricsFile);
        var checkpoint = Path.Combine(runDirectory, CheckpointFolder);
        var (train, validation) = primary ? ReadHistory(metricsPath, trainer.CompletedSteps) : ([], []);
        History = new LossHistory(train, validation);
        using var metrics = primary ? OpenMetrics(metricsPath) : StreamWriter.Null;
        var run = Stopwatch.StartNew();
        long tokens = 0;
        double first = double.NaN, last = double.NaN, lastValidation = double.NaN;
        var lastPrint = TimeSpan.Zero;
        var startStep = trainer.CompletedSteps;
        var completed = false;
        try
        {
            while (trainer.CompletedSteps < options.Steps && !Stopping(cancellation))
            {
                var result = trainer.Step();
                tokens += result.Tokens;
                StepMilliseconds += result.Seconds * 1e3;
                if (double.IsNaN(first)) first = result.Loss;
                last = result.Loss;
                train.Add((result.Step, result.Loss));
                AfterStep?.Invoke(result);
                var line = new JsonObject
                {
                    ["step"] = result.Step,
                    ["loss"] = Finite(result.Loss),
                    ["lr"] = result.LearningRate,
                    ["grad_norm"] = Finite(result.GradientNorm),
                    ["tokens_per_s"] = Math.Round(result.Tokens / result.Seconds, 1),
                    ["issue_ms"] = Math.Round(result.IssueSeconds * 1e3, 3),
                    ["memory_bytes"] = trainer.AllocatedBytes,
                    ["optimizer_bytes"] = trainer.Optimizer.AllocatedBytes,
                    ["gradient_bytes"] = trainer.Model.GradientBytes + trainer.Optimizer.GradientShardBytes,
                    ["planned_bytes"] = trainer.Model.Plan.TotalBytes,
                    ["process_bytes"] = Environment.WorkingSet,
                    ["skipped"] = result.Skipped,
                };
                if (trainer.Model.Device.QueryMemory() is { } memory) line["device_used_bytes"] = memory.UsedBytes;
                if (trainer.Ranks > 1) line["ranks"] = trainer.Ranks;
                if (result.Skipped)
                    output.WriteLine($"{(interactive ? "\n" : "")}step {result.Step}: loss {result.Loss} / gradient norm {result.GradientNorm} not finite; step skipped ({trainer.ConsecutiveBadSteps} in a row, stop at {options.MaxConsecutiveBadSteps})");
                var final = result.Step == options.Steps;
                if (final || (options.EvalInterval > 0 && result.Step % options.EvalInterval == 0))
                {
                    Evaluating?.Invoke(true);
                    lastValidation = trainer.EvaluateValidation();
                    Evaluating?.Invoke(false);
                    validation.Add((result.Step, lastValidation));
                    line["val_loss"] = Finite(lastValidation);
                }
                metrics.WriteLine(line.ToJsonString());
                var elapsed = run.Elapsed;
                if (line.ContainsKey("val_loss") || final || elapsed - lastPrint > TimeSpan.FromSeconds(interactive ? 0.25 : 10))
                {
                    lastPrint = elapsed;
                    var rate = tokens / elapsed.TotalSeconds;
                    var eta = TimeSpan.FromSeconds((options.Steps - result.Step) * (elapsed.TotalSeconds / (result.Step - startStep)));
                    var text = string.Create(CultureInfo.InvariantCulture,
                        $"step {result.Step,5}/{options.Steps}  loss {result.Loss,7:0.0000}  lr {result.LearningRate:0.00e+0}  |g| {result.GradientNorm,6:0.000}  {rate,8:0} tok/s  ETA {Duration(eta)}");
                    if (line.ContainsKey("val_loss"))
                    {
                        output.Write((interactive ? "\r" : "") + text + string.Create(CultureInfo.InvariantCulture, $"  val {lastValidation:0.0000}") + Environment.NewLine);
                        metrics.Flush();
                    }
                    else
                    {
                        output.Write(interactive ? "\r" + text : text + Environment.NewLine);
                    }
                }
                if (SaveCheckpoints && options.CheckpointInterval > 0 && result.Step % options.CheckpointInterval == 0 && !final)
                {
                    // The metrics of the steps the checkpoint holds reach the disk first: a resumed run keeps them.
                    metrics.Flush();
                    Checkpoints.Save(trainer, checkpoint);
                }
            }
            completed = true;
        }
        catch (TrainingDivergedException)
        {
            output.WriteLine();
            throw;
        }
        finally
        {
            metrics.Flush();
            // After any other failure the step may have stopped half way (or the device may be unusable): the last
            // checkpoint written stays the one to resume from, and nothing here may hide the original exception.
            if (SaveCheckpoints && completed && trainer.CompletedSteps > startStep) Checkpoints.Save(trainer, checkpoint);
        }
        return new RunSummary(runDirectory, checkpoint, metricsPath, first, last, lastValidation, tokens / run.Elapsed.TotalSeconds);
    }

    /// <summary>Whether to stop before the next step: the token's word, agreed by every rank of a data-parallel run (any rank's stops all).</summary>
    private bool Stopping(CancellationToken cancellation)
    {
        if (trainer.Collectives is not { } ranks) return cancellation.IsCancellationRequested;
        Span<double> stop = [cancellation.IsCancellationRequested ? 1 : 0];
        ranks.AllReduceSum(stop);
        return stop[0] > 0;
    }

    /// <summary>m:ss, or h:mm:ss from an hour on.</summary>
    private static string Duration(TimeSpan time) =>
        time.TotalHours >= 1 ? string.Create(CultureInfo.InvariantCulture, $"{(int)time.TotalHours}:{time:mm\\:ss}") : time.ToString("m\\:ss", CultureInfo.InvariantCulture);

    private static JsonNode? Finite(double value) => double.IsFinite(value) ? JsonValue.Create(value) : JsonValue.Create(value.ToString(CultureInfo.InvariantCulture));

    /// <summary>The metrics file for appending; a last line cut short by a run that was stopped is ended first, so the next line stands alone.</summary>
    private static StreamWriter OpenMetrics(string path)
    {
        var writer = new StreamWriter(path, append: true);
        var length = writer.BaseStream.Length;
        if (length > 0)
        {
            using var reader = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            reader.Position = length - 1;
            if (reader.ReadByte() != '\n') writer.WriteLine();
        }
        return writer;
    }

    /// <summary>The curves of earlier invocations of a resumed run, from its metrics file.</summary>
    private static (List<(int, double)> Train, List<(int, double)> Validation) ReadHistory(string path, int lastStep)
    {
        var train = new List<(int, double)>();
        var validation = new List<(int, double)>();
        if (!File.Exists(path)) return (train, validation);
        foreach (var text in File.ReadLines(path))
        {
            try
            {
                if (JsonNode.Parse(text) is not JsonObject line) continue;
                var step = line["step"]!.GetValue<int>();
                // Steps past the checkpoint were lost with the interrupted run and are trained again.
                if (step > lastStep) continue;
                if (line["loss"] is JsonValue loss && loss.TryGetValue<double>(out var l)) train.Add((step, l));
                if (line["val_loss"] is JsonValue val && val.TryGetValue<double>(out var v)) validation.Add((step, v));
            }
            catch (JsonException)
            {
                // A line cut short by an interrupted run: the curves simply miss that step.
            }
        }
        return (train, validation);
    }
}
