using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Keel.Native.Memory;
using Keel.Native.Model;
using Keel.Native.Training;

namespace Keel.Native.Studies;

/// <summary>The three studies of depth stability.</summary>
public enum StudyKind
{
    /// <summary>
    /// The learning-rate range test of the paper's Table 1: one run per architecture whose learning rate rises linearly
    /// from ~0 (max / steps at step 1) to a maximum at the last step; the result is the learning rate at divergence.
    /// </summary>
    LrRange,

    /// <summary>Fixed-peak runs (warm-up then cosine) over a list of learning rates: final losses per (architecture, rate).</summary>
    LrSweep,

    /// <summary>The same training at several depths: validation loss against depth per architecture.</summary>
    Depth,
}

/// <summary>One training run of a study: a model and how to train it. Every run of a study shares the seed, so the data order and the initial random stream are the same.</summary>
/// <param name="Name">Unique in the study; also the run's folder name (<c>keel-L64-lr3e-3</c>).</param>
/// <param name="Config">The model.</param>
/// <param name="Options">How it trains (for a range test: warm-up over every step to the maximum).</param>
public sealed record StudyRun(string Name, ModelConfig Config, TrainingOptions Options)
{
    /// <summary>The run's name for an architecture, a depth and, when the study varies it, a peak learning rate.</summary>
    public static string NameOf(Architecture architecture, int subLayers, double? learningRate = null) =>
        $"{architecture.ToString().ToLowerInvariant()}-L{subLayers}" + (learningRate is { } lr ? "-lr" + FormatRate(lr) : "");

    /// <summary>A learning rate in the short form used in names and tables: 3e-3, 1.5e-2.</summary>
    public static string FormatRate(double rate) => rate.ToString("0.###e+0", CultureInfo.InvariantCulture).Replace("e+", "e", StringComparison.Ordinal);

    /// <summary>
    /// What makes a finished run's result reusable: the model, the training options that change the numbers, the data,
    /// the tokenizer and the divergence criteria (the memory policy, budget and CUDA graphs do not change losses).
    /// </summary>
    public string Identity(string dataSource, TokenizerKind tokenizer, DivergenceCriteria criteria)
    {
        var options = Options with { Memory = MemoryPolicy.Store, MemoryBudget = null, CudaGraphs = true };
        return JsonSerializer.Serialize(new { config = Config, options, data = dataSource, tokenizer, criteria }, StudyJson.Options);
    }
}

/// <summary>One step of a run's loss curve.</summary>
public readonly record struct StudyPoint(int Step, double LearningRate, double Loss);

/// <summary>What a finished run of a study found (a run stopped at divergence is finished).</summary>
public sealed record StudyRunResult
{
    /// <summary>The run's name.</summary>
    public required string Name { get; init; }

    /// <summary>The architecture.</summary>
    public required Architecture Architecture { get; init; }

    /// <summary>L, the sub-layers.</summary>
    public required int SubLayers { get; init; }

    /// <summary>The peak learning rate (a range test's maximum).</summary>
    public required double PeakLearningRate { get; init; }

    /// <summary>Steps planned.</summary>
    public required int PlannedSteps { get; init; }

    /// <summary>Steps run (fewer than planned when the run diverged).</summary>
    public required int Steps { get; init; }

    /// <summary>Whether the run diverged.</summary>
    public required bool Diverged { get; init; }

    /// <summary>Why, when it diverged.</summary>
    public DivergenceReason? DivergenceReason { get; init; }

    /// <summary>The first step of the divergence episode.</summary>
    public int? DivergedAtStep { get; init; }

    /// <summary>The scheduled learning rate at <see cref="DivergedAtStep"/>.</summary>
    public double? DivergenceLearningRate { get; init; }

    /// <summary>The lowest training loss of the run (null when no step had a finite loss).</summary>
    public double? MinimumLoss { get; init; }

    /// <summary>The learning rate of the step with the lowest training loss.</summary>
    public double? LearningRateAtMinimum { get; init; }

    /// <summary>Mean training loss over the last tenth of the steps run (at least one); null when not finite.</summary>
    public double? FinalTrainLoss { get; init; }

    /// <summary>Validation loss after the last step; null for a diverged run.</summary>
    public double? ValidationLoss { get; init; }

    /// <summary>Wall time of the run.</summary>
    public required double Seconds { get; init; }

    /// <summary>Mean training throughput.</summary>
    public required double TokensPerSecond { get; init; }

    /// <summary>The run's identity (<see cref="StudyRun.Identity"/>): a resumed study reuses the result only when it matches.</summary>
    public required string Identity { get; init; }

    /// <summary>Every step's learning rate and training loss.</summary>
    public required IReadOnlyList<StudyPoint> Curve { get; init; }
}

/// <summary>JSON for study files: snake_case names, enums as names, NaN and infinities as strings.</summary>
public static class StudyJson
{
    /// <summary>The options.</summary>
    public static JsonSerializerOptions Options { get; } = new(ModelConfig.JsonOptions)
    {
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        WriteIndented = false,
    };
}
