using System.Globalization;
using Keel.Native.Training;

namespace Keel.Native.Studies;

/// <summary>
/// When a run counts as diverged. A step diverges the run when (1) its training loss is NaN or infinite, or (2) it
/// starts a streak of <see cref="Patience"/> consecutive steps whose loss each exceeds the lowest loss seen before
/// the streak by more than <see cref="Margin"/> nats; (3) the trainer's NaN guard stopping the run
/// (<see cref="TrainingDivergedException"/>) counts as well, from the first skipped step of its streak. The
/// divergence step is the first step of the episode, so the learning rate reported for it does not depend on the
/// patience. Values are checked when set.
/// </summary>
public sealed record DivergenceCriteria
{
    /// <summary>Nats above the running minimum that count as a diverging loss (default 1.0).</summary>
    public double Margin { get; init => field = value > 0 && double.IsFinite(value) ? value : throw new ArgumentOutOfRangeException(nameof(Margin), value, "Margin must be positive and finite."); } = 1.0;

    /// <summary>Consecutive steps above the margin that make a divergence (default 10).</summary>
    public int Patience { get; init => field = value > 0 ? value : throw new ArgumentOutOfRangeException(nameof(Patience), value, "Patience must be positive."); } = 10;

    /// <summary>The criteria in one sentence, for reports.</summary>
    public string Describe() => string.Create(CultureInfo.InvariantCulture,
        $"a run diverges at a non-finite training loss, at {Patience} consecutive steps each more than {Margin:0.###} nats above the lowest loss before them, or when the NaN guard stops it; the step reported is the first of that episode");
}

/// <summary>Why a run was called diverged.</summary>
public enum DivergenceReason
{
    /// <summary>A step's training loss was NaN or infinite.</summary>
    NonFiniteLoss,

    /// <summary>The loss stayed above its running minimum by more than the margin for the patience.</summary>
    LossAboveMinimum,

    /// <summary>The trainer's NaN guard stopped the run (consecutive steps skipped for non-finite loss or gradients).</summary>
    NanGuard,
}

/// <summary>
/// Watches the steps of one run and says when it has diverged under <see cref="DivergenceCriteria"/>. Feed it every
/// step in order (<see cref="Observe"/>); once it has fired it stays fired.
/// </summary>
public sealed class DivergenceDetector(DivergenceCriteria criteria)
{
    private readonly DivergenceCriteria _criteria = criteria ?? throw new ArgumentNullException(nameof(criteria));
    private double _minimum = double.PositiveInfinity;
    private int _streak;
    private StepResult _streakStart;

    /// <summary>True once a divergence was seen.</summary>
    public bool Diverged => Reason is not null;

    /// <summary>Why, once <see cref="Diverged"/>.</summary>
    public DivergenceReason? Reason { get; private set; }

    /// <summary>The first step of the divergence episode (0 before).</summary>
    public int Step { get; private set; }

    /// <summary>The scheduled learning rate of <see cref="Step"/> (NaN before).</summary>
    public double LearningRate { get; private set; } = double.NaN;

    /// <summary>The lowest finite training loss seen (infinite before any).</summary>
    public double MinimumLoss => _minimum;

    /// <summary>Takes the next step; returns true when the run has diverged (at this step or before).</summary>
    public bool Observe(StepResult step)
    {
        if (Diverged) return true;
        if (!double.IsFinite(step.Loss))
        {
            Fire(DivergenceReason.NonFiniteLoss, step);
            return true;
        }
        if (step.Loss > _minimum + _criteria.Margin)
        {
            if (_streak++ == 0) _streakStart = step;
            if (_streak >= _criteria.Patience) Fire(DivergenceReason.LossAboveMinimum, _streakStart);
            return Diverged;
        }
        _streak = 0;
        _minimum = Math.Min(_minimum, step.Loss);
        return false;
    }

    /// <summary>Records the NaN guard stopping the run at its step <paramref name="firstBadStep"/> (scheduled learning rate <paramref name="learningRate"/>).</summary>
    public void NanGuardTripped(int firstBadStep, double learningRate)
    {
        if (Diverged) return;
        Reason = DivergenceReason.NanGuard;
        (Step, LearningRate) = (firstBadStep, learningRate);
    }

    private void Fire(DivergenceReason reason, StepResult at)
    {
        Reason = reason;
        (Step, LearningRate) = (at.Step, at.LearningRate);
    }
}
