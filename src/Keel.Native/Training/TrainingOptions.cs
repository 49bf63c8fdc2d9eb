using System.Text.Json.Serialization;
using Keel.Native.Memory;

namespace Keel.Native.Training;

/// <summary>
/// How a run trains. Each value is range-checked when set (also through <c>with</c> and JSON); an invalid one is
/// an <see cref="ArgumentException"/> naming it. The defaults are those of the paper where it gives one (AdamW
/// 0.9/0.95, weight decay 0.01, clipping at 1.0, warm-up then cosine to 1e-7) and those of <c>keel train</c>'s
/// built-in CPU demo otherwise; the warm-up, unless set, is relative to <see cref="Steps"/>.
/// </summary>
/// <example>
/// <code>
/// var options = new TrainingOptions { Steps = 200, BatchSize = 8, LearningRate = 1e-3 };
/// // WarmupSteps is 20 (a tenth of 200); the learning rate then decays along a cosine to 1e-7 at step 200.
/// </code>
/// </example>
public sealed record TrainingOptions
{
    /// <summary>The warm-up of a long run when none is set: 50 steps.</summary>
    public const int LongRunWarmupSteps = 50;

    private readonly int? _warmupSteps;

    /// <summary>Optimizer steps of the whole run (the cosine schedule ends here).</summary>
    public int Steps { get; init => field = Positive(value, nameof(Steps)); } = 600;

    /// <summary>Sequences per micro-batch (what the device holds at once); in a data-parallel run, over all ranks (each holds BatchSize / ranks).</summary>
    public int BatchSize { get; init => field = Positive(value, nameof(BatchSize)); } = 16;

    /// <summary>Micro-batches per optimizer step; their gradients are summed (the loss is the mean over all their tokens).</summary>
    public int AccumulationSteps { get; init => field = Positive(value, nameof(AccumulationSteps)); } = 1;

    /// <summary>Peak learning rate, reached at the end of the warm-up.</summary>
    public double LearningRate { get; init => field = PositiveFinite(value, nameof(LearningRate)); } = 3e-3;

    /// <summary>Learning rate at the end of the cosine decay (1e-7).</summary>
    public double MinLearningRate { get; init => field = NotNegative(value, nameof(MinLearningRate)); } = 1e-7;

    /// <summary>
    /// Steps of linear warm-up from 0 to <see cref="LearningRate"/>; may be 0. Unless set, <see cref="DefaultWarmupSteps"/>
    /// of <see cref="Steps"/> (50, or a tenth of the steps when that is fewer; it follows Steps, also through <c>with</c>).
    /// In JSON, <c>warmup_steps</c> is null when not set.
    /// </summary>
    [JsonIgnore]
    public int WarmupSteps
    {
        get => _warmupSteps ?? DefaultWarmupSteps(Steps);
        init => _warmupSteps = NotNegative(value, nameof(WarmupSteps));
    }

    /// <summary>
    /// The warm-up when none is set: <see cref="LongRunWarmupSteps"/>, or a tenth of <paramref name="steps"/> (at least 1)
    /// when that is fewer, so a short run's learning rate still reaches its peak and decays.
    /// </summary>
    public static int DefaultWarmupSteps(int steps) => Math.Min(LongRunWarmupSteps, Math.Max(1, steps / 10));

    /// <summary><see cref="WarmupSteps"/> as set (null: it follows Steps); what JSON holds.</summary>
    [JsonInclude, JsonPropertyName("warmup_steps")]
    private int? WarmupStepsSetting
    {
        get => _warmupSteps;
        init => _warmupSteps = value is { } steps ? NotNegative(steps, nameof(WarmupSteps)) : null;
    }

    /// <summary>AdamW's decoupled weight decay, applied to the matrices (embedding and LM head included), not to norm gains and biases.</summary>
    public double WeightDecay { get; init => field = NotNegative(value, nameof(WeightDecay)); } = 0.01;

    /// <summary>AdamW β1.</summary>
    public double Beta1 { get; init => field = value is >= 0 and < 1 ? value : throw new ArgumentOutOfRangeException(nameof(Beta1), value, "Beta1 must be in [0, 1)."); } = 0.9;

    /// <summary>AdamW β2.</summary>
    public double Beta2 { get; init => field = value is >= 0 and < 1 ? value : throw new ArgumentOutOfRangeException(nameof(Beta2), value, "Beta2 must be in [0, 1)."); } = 0.95;

    /// <summary>AdamW ε.</summary>
    public double AdamEpsilon { get; init => field = PositiveFinite(value, nameof(AdamEpsilon)); } = 1e-8;

    /// <summary>Global gradient-norm clipping threshold; 0 turns clipping off.</summary>
    public double GradientClip { get; init => field = NotNegative(value, nameof(GradientClip)); } = 1.0;

    /// <summary>Seeds the initialization and the batches; a CPU run with the same seed is reproducible bit for bit.</summary>
    public ulong Seed { get; init; } = 1;

    /// <summary>Validation loss every this many steps (and at the end); 0 only at the end.</summary>
    public int EvalInterval { get; init => field = NotNegative(value, nameof(EvalInterval)); } = 50;

    /// <summary>Batches of validation windows per evaluation (at most; fewer if the validation text is short).</summary>
    public int EvalBatches { get; init => field = Positive(value, nameof(EvalBatches)); } = 4;

    /// <summary>Fraction of the data's tokens held out for validation (its end).</summary>
    public double ValidationFraction { get; init => field = value is > 0 and < 1 ? value : throw new ArgumentOutOfRangeException(nameof(ValidationFraction), value, "ValidationFraction must be in (0, 1)."); } = 0.1;

    /// <summary>Write a checkpoint every this many steps (and at the end); 0 only at the end.</summary>
    public int CheckpointInterval { get; init => field = NotNegative(value, nameof(CheckpointInterval)); }

    /// <summary>Stop after this many consecutive steps whose loss or gradients were NaN or infinite (each is skipped).</summary>
    public int MaxConsecutiveBadSteps { get; init => field = Positive(value, nameof(MaxConsecutiveBadSteps)); } = 5;

    /// <summary>
    /// Which activations a step keeps and which it recomputes (<see cref="MemoryPolicy"/>): store (default), selective,
    /// every:K, binomial:S, or auto, which picks the plan with the least recompute that fits <see cref="MemoryBudget"/>
    /// (by default the device's memory). Losses and gradients do not depend on it.
    /// </summary>
    public MemoryPolicy Memory { get; init => field = value ?? throw new ArgumentNullException(nameof(Memory)); } = MemoryPolicy.Store;

    /// <summary>Device bytes the step may use (parameters, optimizer state, activations, workspaces); null for the device's memory under auto and no limit otherwise.</summary>
    public long? MemoryBudget { get; init => field = value is null or > 0 ? value : throw new ArgumentOutOfRangeException(nameof(MemoryBudget), value, "MemoryBudget must be positive."); }

    /// <summary>
    /// In a data-parallel run, how the training state is sharded over the ranks (ZeRO stage, <see cref="Distributed.Sharding"/>):
    /// 0 replicates everything, 1 shards AdamW's moments and the master-weight updates, 2 the gradients too. Losses and
    /// gradients do not depend on it (up to the order of float sums); a run of one process ignores it.
    /// </summary>
    public int ZeroStage { get; init => field = value is >= 0 and <= 2 ? value : throw new ArgumentOutOfRangeException(nameof(ZeroStage), value, "ZeroStage must be 0, 1 or 2."); }

    /// <summary>
    /// On a GPU, capture each micro-batch's forward and backward into a CUDA graph after the first step and replay it
    /// (one launch instead of tens of thousands); ignored on other devices and while profiling.
    /// </summary>
    public bool CudaGraphs { get; init; } = true;

    /// <summary>The learning rate of step <paramref name="step"/> (from 1): linear warm-up to the peak, then cosine to the minimum at <see cref="Steps"/>.</summary>
    public double LearningRateAt(int step)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(step);
        if (step <= WarmupSteps) return LearningRate * step / WarmupSteps;
        var decaySteps = Steps - WarmupSteps;
        if (decaySteps <= 0) return LearningRate;
        var progress = Math.Min(1.0, (double)(step - WarmupSteps) / decaySteps);
        return MinLearningRate + 0.5 * (LearningRate - MinLearningRate) * (1 + Math.Cos(Math.PI * progress));
    }

    private static int Positive(int value, string name) =>
        value > 0 ? value : throw new ArgumentOutOfRangeException(name, value, $"{name} must be positive.");

    private static int NotNegative(int value, string name) =>
        value >= 0 ? value : throw new ArgumentOutOfRangeException(name, value, $"{name} must not be negative.");

    private static double PositiveFinite(double value, string name) =>
        value > 0 && double.IsFinite(value) ? value : throw new ArgumentOutOfRangeException(name, value, $"{name} must be positive and finite.");

    private static double NotNegative(double value, string name) =>
        value >= 0 && double.IsFinite(value) ? value : throw new ArgumentOutOfRangeException(name, value, $"{name} must be finite and not negative.");
}
