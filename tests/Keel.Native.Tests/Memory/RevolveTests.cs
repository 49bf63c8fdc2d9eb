namespace Keel.Native.Tests.Memory;

public sealed class RevolveTests
{
    [Theory]
    [InlineData(1, 1, 0)]
    [InlineData(2, 1, 1)]
    [InlineData(3, 1, 3)]
    [InlineData(2, 2, 1)]
    [InlineData(3, 2, 2)]
    [InlineData(10, 2, 20)]
    [InlineData(10, 10, 9)]
    [InlineData(1024, 2, 29876)]
    public void KnownCounts(int steps, int slots, long advances) => Assert.Equal(advances, Revolve.MinimalAdvances(steps, slots));

    [Fact]
    public void ClosedFormEqualsTheOptimumOfTheSplitRecursionForSmallChains()
    {
        // p(l, s) = min over splits m of m + p(l - m, s - 1) + p(m, s), p(1, s) = 0, p(l, 1) = l(l - 1)/2: the optimum by
        // dynamic programming over every split, against t·l − β(s + 1, t − 1).
        const int maxSteps = 60, maxSlots = 8;
        var best = new long[maxSteps + 1, maxSlots + 1];
        for (var s = 1; s <= maxSlots; s++)
        {
            for (var l = 2; l <= maxSteps; l++)
            {
                if (s == 1)
                {
                    best[l, s] = (long)l * (l - 1) / 2;
                    continue;
                }
                var min = long.MaxValue;
                for (var m = 1; m < l; m++) min = Math.Min(min, m + best[l - m, s - 1] + best[m, s]);
                best[l, s] = min;
            }
        }
        for (var s = 1; s <= maxSlots; s++)
            for (var l = 1; l <= maxSteps; l++)
                Assert.True(best[l, s] == Revolve.MinimalAdvances(l, s), $"l = {l}, s = {s}: optimum {best[l, s]}, closed form {Revolve.MinimalAdvances(l, s)}");
    }

    [Fact]
    public void SchedulesAdvanceAsOftenAsTheClosedFormAndRunCorrectlyForAllSmallChains()
    {
        for (var slots = 1; slots <= 10; slots++)
        {
            for (var steps = 1; steps <= 80; steps++)
            {
                var actions = Revolve.Schedule(steps, slots);
                Assert.True(Revolve.CountAdvances(actions) == Revolve.MinimalAdvances(steps, slots), $"l = {steps}, s = {slots}");
                Simulate(actions, steps, slots);
            }
        }
    }

    [Fact]
    public void LargeChainsScheduleQuicklyAndExactly()
    {
        foreach (var slots in new[] { 2, 11, 32, 1024 })
            Assert.Equal(Revolve.MinimalAdvances(1024, slots), Revolve.CountAdvances(Revolve.Schedule(1024, slots)));
    }

    [Fact]
    public void BetaIsTheBinomialCoefficientAndSaturates()
    {
        Assert.Equal(1, Revolve.Beta(5, 0));
        Assert.Equal(0, Revolve.Beta(5, -1));
        Assert.Equal(10, Revolve.Beta(2, 3));
        Assert.Equal(184756, Revolve.Beta(10, 10));
        Assert.Equal(long.MaxValue, Revolve.Beta(100, 100));
    }

    /// <summary>Runs the actions on a model of the chain: every step reversed once, last first, from the right state, within the slots.</summary>
    private static void Simulate(IReadOnlyList<RevolveAction> actions, int steps, int slots)
    {
        var stored = new Dictionary<int, int>();
        var current = 0;
        var nextReverse = steps - 1;
        foreach (var a in actions)
        {
            switch (a.Kind)
            {
                case RevolveActionKind.TakeSnapshot:
                    Assert.Equal(current, a.Position);
                    Assert.InRange(a.Slot, 0, slots - 1);
                    Assert.False(stored.ContainsKey(a.Slot) && stored[a.Slot] != a.Position && StillNeeded(stored[a.Slot], nextReverse), $"slot {a.Slot} overwritten while needed");
                    stored[a.Slot] = a.Position;
                    break;
                case RevolveActionKind.Advance:
                    Assert.Equal(current, a.Position);
                    Assert.True(a.Count > 0);
                    current += a.Count;
                    Assert.True(current <= nextReverse, "advanced past the step to reverse");
                    break;
                case RevolveActionKind.Restore:
                    Assert.True(stored.TryGetValue(a.Slot, out var position) && position == a.Position, $"restore of {a.Position} from slot {a.Slot}");
                    current = a.Position;
                    break;
                case RevolveActionKind.ReverseStep:
                    Assert.Equal(nextReverse, a.Position);
                    Assert.Equal(current, a.Position);
                    nextReverse--;
                    break;
            }
            Assert.True(stored.Count <= slots);
        }
        Assert.Equal(-1, nextReverse);

        static bool StillNeeded(int position, int nextReverse) => position <= nextReverse;
    }
}
