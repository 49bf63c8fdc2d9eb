using System.Globalization;
using Keel.Native.Model;
using Keel.Native.Training;

namespace Keel.Cli.Commands;

/// <summary>
/// The help texts of the options whose defaults are the library's: each one states the default of a default-made
/// <see cref="ModelConfig"/> or <see cref="TrainingOptions"/>, so what <c>--help</c> says and what a run does cannot
/// drift apart. CommandLineParser reads them by name (<c>HelpText = nameof(HelpTexts.Hidden), ResourceType =
/// typeof(HelpTexts)</c>), which is why this class is public.
/// </summary>
public static class HelpTexts
{
    private static readonly ModelConfig Model = new();
    private static readonly TrainingOptions Training = new();

    /// <summary><c>--arch</c>.</summary>
    public static string Architecture => $"Architecture: Keel, PreLN, PostLN or DeepNorm. Default {Model.Architecture}.";

    /// <summary><c>--layers</c>.</summary>
    public static string SubLayers => $"L, the number of sub-layers (attention and FFN counted separately; even). Default {Model.SubLayers}.";

    /// <summary><c>--hidden</c>.</summary>
    public static string Hidden => $"Hidden size. Default {Model.Hidden}.";

    /// <summary><c>--heads</c>.</summary>
    public static string Heads => $"Attention heads. Default {Model.Heads}.";

    /// <summary><c>--kv-heads</c>.</summary>
    public static string KvHeads => $"Key/value heads (grouped-query). Default {Model.KvHeads}.";

    /// <summary><c>--ffn</c>.</summary>
    public static string FeedForwardSize =>
        $"FFN intermediate size. Default {ModelConfig.DefaultFeedForwardSize(1)} × hidden ({Model.FeedForwardSize} at hidden {Model.Hidden}).";

    /// <summary><c>--ffn-kind</c>.</summary>
    public static string FeedForward => $"SwiGlu or Gelu. Default {Model.FeedForward}.";

    /// <summary><c>--norm</c>.</summary>
    public static string Norm => $"Rms or Layer. Default {Model.Norm}.";

    /// <summary><c>--seq</c>.</summary>
    public static string SequenceLength => $"Sequence length. Default {Model.SequenceLength}.";

    /// <summary><c>--batch</c>.</summary>
    public static string BatchSize => $"Sequences per micro-batch, over all ranks under mpirun (each rank takes an equal share). Default {Training.BatchSize}.";

    /// <summary><c>--data</c>.</summary>
    public static string Data => Invariant($"A UTF-8 text file to train on (the last {100 * Training.ValidationFraction:0}% held out for validation). Default: the built-in copy task.");

    /// <summary><c>--steps</c>.</summary>
    public static string Steps => $"Optimizer steps. Default {Training.Steps}.";

    /// <summary><c>--accumulate</c>.</summary>
    public static string AccumulationSteps => $"Micro-batches per optimizer step. Default {Training.AccumulationSteps}.";

    /// <summary><c>--lr</c>.</summary>
    public static string LearningRate => Invariant($"Peak learning rate. Default {Training.LearningRate:0.##e0}.");

    /// <summary><c>--warmup</c>.</summary>
    public static string WarmupSteps =>
        Invariant($"Warm-up steps (then cosine decay to {Training.MinLearningRate:0.##e0} at the last step). Default {TrainingOptions.LongRunWarmupSteps}, or a tenth of --steps when that is fewer.");

    /// <summary><c>--warmup</c> of <c>keel study</c>, which only its fixed-peak studies use.</summary>
    public static string StudyWarmupSteps => "lr-sweep and depth: " + WarmupSteps;

    /// <summary><c>--zero</c> of <c>keel train</c> (under an MPI launcher) and <c>keel plan</c> (with <c>--ranks</c>).</summary>
    public static string ZeroStage =>
        "How the training state is sharded over the ranks: 0 (every rank holds everything), 1 (AdamW moments and master-weight updates sharded), " +
        $"2 (gradients sharded too). Default {Training.ZeroStage}.";

    /// <summary><c>--seed</c>.</summary>
    public static string Seed => $"Seed of the initialization and the batches. Default {Training.Seed}.";

    /// <summary><c>--eval-interval</c>.</summary>
    public static string EvalInterval => $"Validation loss every N steps (and at the end; 0: only at the end). Default {Training.EvalInterval}.";

    /// <summary><c>--checkpoint-interval</c>.</summary>
    public static string CheckpointInterval =>
        "Checkpoint every N steps (always at the end). Default " + (Training.CheckpointInterval == 0 ? "only at the end." : $"{Training.CheckpointInterval}.");

    /// <summary><c>--max-bad-steps</c>.</summary>
    public static string MaxConsecutiveBadSteps => $"Stop after this many consecutive NaN/Inf steps. Default {Training.MaxConsecutiveBadSteps}.";

    /// <summary><c>--memory</c>.</summary>
    public static string Memory =>
        "Activation policy: store (keep everything), selective (recompute norms and activations), every:K (keep x every K sub-layers, recompute segments), " +
        $"binomial:S (Revolve with S slots), or auto (least recompute that fits --budget). keel plan shows them all. Default {Training.Memory}.";

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
