namespace Keel.Native.Memory;

/// <summary>What one action of a binomial checkpointing schedule does.</summary>
internal enum RevolveActionKind
{
    /// <summary>Run steps <see cref="RevolveAction.Position"/> .. Position + Count − 1 forward without keeping their tapes.</summary>
    Advance,

    /// <summary>Keep the current state (the state before step <see cref="RevolveAction.Position"/>) in slot <see cref="RevolveAction.Slot"/>.</summary>
    TakeSnapshot,

    /// <summary>Make the state kept in slot <see cref="RevolveAction.Slot"/> (before step <see cref="RevolveAction.Position"/>) the current one.</summary>
    Restore,

    /// <summary>Run step <see cref="RevolveAction.Position"/> forward keeping its tape, then its backward (the adjoint of that step).</summary>
    ReverseStep,
}

/// <summary>One action of a <see cref="Revolve"/> schedule.</summary>
/// <param name="Kind">What the action does.</param>
/// <param name="Position">The step it starts at (the state index: the state before step Position).</param>
/// <param name="Count">Steps advanced (<see cref="RevolveActionKind.Advance"/>), else 0.</param>
/// <param name="Slot">The snapshot slot (<see cref="RevolveActionKind.TakeSnapshot"/>, <see cref="RevolveActionKind.Restore"/>), else −1.</param>
internal readonly record struct RevolveAction(RevolveActionKind Kind, int Position, int Count, int Slot)
{
    /// <inheritdoc />
    public override string ToString() => Kind switch
    {
        RevolveActionKind.Advance => $"advance {Position}->{Position + Count}",
        RevolveActionKind.TakeSnapshot => $"snapshot {Position} in slot {Slot}",
        RevolveActionKind.Restore => $"restore {Position} from slot {Slot}",
        _ => $"reverse {Position}",
    };
}

/// <summary>
/// Binomial checkpointing (Griewank and Walther's "Revolve"): reversing a chain of l steps whose states can be kept in
/// at most s snapshot slots with the fewest forward steps.
/// <para>
/// Conventions, as in Griewank and Walther's papers: a schedule starts at state 0 with nothing run yet; s counts every
/// slot, the one holding state 0 included (s = 1 keeps only state 0); a reverse step runs its step forward once more with
/// its tape and then backward, and that taped forward is not counted. The count <see cref="MinimalAdvances"/> is the
/// number of untaped forward steps, the first sweep from state 0 included. A chain that keeps every tape runs each step
/// forward exactly once (taped), so p(l, s) is also exactly the number of extra forward steps against keeping everything.
/// </para>
/// <para>
/// With β(s, t) = C(s + t, s), the largest chain s slots reverse when no step runs forward more than t times untaped, p is
/// p(l, s) = t·l − β(s + 1, t − 1) for the t with β(s, t − 1) &lt; l ≤ β(s, t) (p(1, s) = 0). <see cref="Schedule"/>
/// splits the chain recursively: advance to a split point m, snapshot it, reverse the right part with one slot fewer,
/// restore, reverse the left part; it picks the m that the closed form says is cheapest, so its advances equal p(l, s).
/// </para>
/// </summary>
internal static class Revolve
{
    /// <summary>β(s, t) = C(s + t, s), saturating at <see cref="long.MaxValue"/>; 0 for t &lt; 0.</summary>
    public static long Beta(int slots, int repetitions)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(slots);
        if (repetitions < 0) return 0;
        // C(s + t, k) with k = min(s, t), built up exactly: each partial product C(s - k + i, i)... is an integer.
        int k = Math.Min(slots, repetitions), n = slots + repetitions;
        Int128 value = 1;
        for (var i = 1; i <= k; i++)
        {
            value = value * (n - k + i) / i;
            if (value >= long.MaxValue) return long.MaxValue;
        }
        return (long)value;
    }

    /// <summary>The repetition number t: the smallest t with β(s, t) ≥ l (0 for l = 1).</summary>
    public static int Repetitions(long steps, int slots)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(steps);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(slots);
        var t = 0;
        while (Beta(slots, t) < steps) t++;
        return t;
    }

    /// <summary>p(l, s): the fewest untaped forward steps that reverse <paramref name="steps"/> steps with <paramref name="slots"/> slots (conventions above).</summary>
    public static long MinimalAdvances(long steps, int slots)
    {
        var t = Repetitions(steps, slots);
        return t * steps - Beta(slots + 1, t - 1);
    }

    /// <summary>
    /// The schedule that reverses <paramref name="steps"/> steps with <paramref name="slots"/> slots in
    /// <see cref="MinimalAdvances"/> advances: it opens with a snapshot of state 0 in slot 0, reverses step l − 1 first
    /// and step 0 last, never holds more than <paramref name="slots"/> snapshots, and never snapshots where a reverse step
    /// follows at once.
    /// </summary>
    public static IReadOnlyList<RevolveAction> Schedule(int steps, int slots)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(steps);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(slots);
        var actions = new List<RevolveAction> { new(RevolveActionKind.TakeSnapshot, 0, 0, 0) };
        var free = new Stack<int>(Enumerable.Range(1, slots - 1).Reverse());
        Reverse(actions, 0, steps, slots, 0, free);
        return actions;
    }

    /// <summary>Untaped forward steps in <paramref name="actions"/>.</summary>
    public static long CountAdvances(IEnumerable<RevolveAction> actions)
    {
        ArgumentNullException.ThrowIfNull(actions);
        return actions.Where(a => a.Kind == RevolveActionKind.Advance).Sum(a => (long)a.Count);
    }

    /// <summary>Reverses steps [a, b) from state a (current, and kept in slot <paramref name="slotOfA"/>) with <paramref name="slots"/> slots, that one included.</summary>
    private static void Reverse(List<RevolveAction> actions, int a, int b, int slots, int slotOfA, Stack<int> free)
    {
        while (b - a > 1)
        {
            var m = a + Split(b - a, slots);
            actions.Add(new(RevolveActionKind.Advance, a, m - a, -1));
            if (slots > 1 && b - m > 1)
            {
                var slot = free.Pop();
                actions.Add(new(RevolveActionKind.TakeSnapshot, m, 0, slot));
                Reverse(actions, m, b, slots - 1, slot, free);
                free.Push(slot);
            }
            else
            {
                // A right part of one step needs no snapshot: it is reversed from the current state at once.
                Reverse(actions, m, b, Math.Max(1, slots - 1), -1, free);
            }
            actions.Add(new(RevolveActionKind.Restore, a, 0, slotOfA));
            b = m;
        }
        actions.Add(new(RevolveActionKind.ReverseStep, a, 0, -1));
    }

    /// <summary>The split m (1 ≤ m &lt; l) with the fewest advances m + p(l − m, s − 1) + p(m, s); with one slot, m = l − 1.</summary>
    private static int Split(int steps, int slots)
    {
        if (slots == 1) return steps - 1;
        // Every step of the left part is advanced once more (to reach m), so an optimal m leaves it reversible within t − 1
        // repetitions (m ≤ β(s, t − 1)), and the right part within t repetitions on s − 1 slots (l − m ≤ β(s − 1, t)).
        // The scan over that window evaluates the closed form, so the choice is exact, not a heuristic.
        var t = Repetitions(steps, slots);
        var low = (int)Math.Max(1, steps - Math.Min(steps, Beta(slots - 1, t)));
        var high = (int)Math.Min(steps - 1, Beta(slots, t - 1));
        if (low > high) (low, high) = (1, steps - 1);
        int best = high;
        var bestCost = long.MaxValue;
        for (var m = high; m >= low; m--)
        {
            var cost = m + MinimalAdvances(steps - m, slots - 1) + MinimalAdvances(m, slots);
            if (cost < bestCost) (best, bestCost) = (m, cost);
        }
        return best;
    }
}
