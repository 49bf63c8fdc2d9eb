using Keel.Native.Studies;

namespace Keel.Native.Tests.Studies;

/// <summary>The divergence rule on hand-made loss sequences: each criterion fires where it should and only there.</summary>
public sealed class DivergenceDetectorTests
{
    private static readonly DivergenceCriteria Criteria = new() { Margin = 1.0, Patience = 3 };

    private static DivergenceDetector Fed(params double[] losses)
    {
        var detector = new DivergenceDetector(Criteria);
        for (var i = 0; i < losses.Length; i++) detector.Observe(Step(i + 1, losses[i]));
        return detector;
    }

    private static StepResult Step(int step, double loss) => new(step, loss, LearningRate: step * 1e-3, GradientNorm: 1, Skipped: !double.IsFinite(loss), Tokens: 64, Seconds: 0.01, IssueSeconds: 0.01);

    [Fact]
    public void ANoisyFallingLossNeverDiverges()
    {
        var random = new Random(7);
        var losses = Enumerable.Range(0, 500).Select(i => 5.5 * Math.Exp(-i / 100.0) + 1.5 + 0.4 * random.NextDouble()).ToArray();
        var detector = Fed(losses);
        Assert.False(detector.Diverged);
        Assert.Null(detector.Reason);
        Assert.Equal(losses.Min(), detector.MinimumLoss);
    }

    [Fact]
    public void ANonFiniteLossDivergesAtItsOwnStep()
    {
        var detector = Fed(5, 4, 3, double.NaN, 2);
        Assert.Equal(DivergenceReason.NonFiniteLoss, detector.Reason);
        Assert.Equal(4, detector.Step);
        Assert.Equal(4e-3, detector.LearningRate, 12);
        Assert.Equal(3, detector.MinimumLoss);

        Assert.Equal(2, Fed(5, double.PositiveInfinity).Step);
    }

    [Fact]
    public void ALossAboveTheMarginForThePatienceDivergesAtTheStartOfTheStreak()
    {
        // Minimum 2; steps 5..7 are above 3 (the margin): the third of them fires, dated to step 5.
        var detector = Fed(5, 3, 2, 2.5, 3.2, 4, 6);
        Assert.Equal(DivergenceReason.LossAboveMinimum, detector.Reason);
        Assert.Equal(5, detector.Step);
        Assert.Equal(5e-3, detector.LearningRate, 12);
    }

    [Fact]
    public void AStreakShorterThanThePatienceOrAtTheMarginIsNotADivergence()
    {
        // Two steps above, then one back within the margin: the streak starts over.
        Assert.False(Fed(5, 2, 3.5, 3.5, 2.9, 3.5, 3.5).Diverged);
        // Exactly at the margin is not above it.
        Assert.False(Fed(5, 2, 3, 3, 3, 3).Diverged);
    }

    [Fact]
    public void OnceFiredTheDetectorKeepsTheFirstEpisode()
    {
        var detector = Fed(5, 2, 4, 4, 4, double.NaN, 1);
        Assert.True(detector.Observe(Step(8, 1)));
        Assert.Equal(DivergenceReason.LossAboveMinimum, detector.Reason);
        Assert.Equal(3, detector.Step);
        detector.NanGuardTripped(6, 1);
        Assert.Equal(DivergenceReason.LossAboveMinimum, detector.Reason);
    }

    [Fact]
    public void TheNanGuardIsRecordedWithItsFirstBadStep()
    {
        var detector = Fed(5, 4);
        detector.NanGuardTripped(3, 0.02);
        Assert.True(detector.Diverged);
        Assert.Equal(DivergenceReason.NanGuard, detector.Reason);
        Assert.Equal((3, 0.02), (detector.Step, detector.LearningRate));
    }

    [Fact]
    public void CriteriaOutOfRangeAreRefusedByName()
    {
        Assert.Equal("Margin", Assert.Throws<ArgumentOutOfRangeException>(() => new DivergenceCriteria { Margin = 0 }).ParamName);
        Assert.Equal("Margin", Assert.Throws<ArgumentOutOfRangeException>(() => new DivergenceCriteria { Margin = double.NaN }).ParamName);
        Assert.Equal("Patience", Assert.Throws<ArgumentOutOfRangeException>(() => new DivergenceCriteria { Patience = 0 }).ParamName);
    }
}
