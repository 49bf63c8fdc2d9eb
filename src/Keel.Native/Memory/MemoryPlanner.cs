using System.Globalization;
using Keel.Native.Model;

namespace Keel.Native.Memory;

/// <summary>No policy fits the budget; the message says what would.</summary>
/// <param name="message">What does not fit, and the smallest budget that would.</param>
/// <param name="smallestBudget">The smallest budget any policy fits (the least memory any plan of this model needs).</param>
public sealed class MemoryBudgetException(string message, long smallestBudget) : ArgumentException(message)
{
    /// <summary>The smallest budget any policy fits.</summary>
    public long SmallestBudget { get; } = smallestBudget;
}

/// <summary>
/// Plans a step's memory: <see cref="Plan"/> writes one policy down (schedule, arena, totals), <see cref="Auto"/> finds the
/// plan with the least recompute that fits a budget.
/// </summary>
/// <example>
/// <code>
/// var inventory = new MemoryInventory(config, ModelPrecision.Mixed, batchSize: 1, MemoryTarget.Cuda);
/// var plan = MemoryPlanner.Auto(inventory, budget: ByteSize.Parse("80GiB"));
/// Console.WriteLine(plan);   // the chosen policy, its peak, arena and recompute overhead
/// </code>
/// </example>
public static class MemoryPlanner
{
    /// <summary>The plan of <paramref name="policy"/>; <see cref="MemoryPolicyKind.Auto"/> needs <paramref name="budget"/> and resolves through <see cref="Auto"/>.</summary>
    /// <exception cref="ArgumentException">Auto without a budget; a parameter out of range.</exception>
    /// <exception cref="MemoryBudgetException">Auto found nothing that fits.</exception>
    public static MemoryPlan Plan(MemoryInventory inventory, MemoryPolicy policy, long? budget = null)
    {
        ArgumentNullException.ThrowIfNull(inventory);
        ArgumentNullException.ThrowIfNull(policy);
        if (policy.Kind == MemoryPolicyKind.Auto)
            return Auto(inventory, budget ?? throw new ArgumentException("The auto memory policy needs a budget.", nameof(budget)));
        var schedule = ScheduleBuilder.Build(inventory, policy);
        var requests = schedule.Resources.Select(r => new ArenaRequest(r.Bytes, r.Lifetimes)).ToArray();
        return new MemoryPlan(inventory, policy, schedule, ArenaPacking.Pack(requests, schedule.Ops.Count));
    }

    /// <summary>
    /// The plan with the least recompute whose total fits <paramref name="budget"/>, among store, selective, every:K for
    /// every K and binomial:S for every S.
    /// <para>
    /// Store recomputes nothing; selective recomputes norms and activations; every:K recomputes the forwards of the
    /// sub-layers before its last segment, which shrinks as K grows; binomial:S recomputes at least every forward but the
    /// last (its first sweep), more than any every:K, and less as S grows. So the search takes store if it fits, else the
    /// cheaper of selective and the largest K whose every:K fits, else the largest S whose binomial:S fits. Above √L,
    /// lowering K removes a tape (which holds an x and more) and adds at most one checkpoint (one x), so memory falls
    /// with K there and a binary search finds the largest K; below √L every K is tried. Memory grows with S (more kept
    /// states), so S is found by binary search. Each candidate is screened by its lower bound and accepted only on its
    /// packed arena, so the result never exceeds the budget.
    /// </para>
    /// </summary>
    /// <exception cref="MemoryBudgetException">Nothing fits; the message gives the smallest budget that would.</exception>
    public static MemoryPlan Auto(MemoryInventory inventory, long budget) =>
        TryAuto(inventory, budget) ?? throw NothingFits(inventory, budget);

    /// <summary><see cref="Auto"/>'s plan, or null when nothing fits.</summary>
    public static MemoryPlan? TryAuto(MemoryInventory inventory, long budget)
    {
        ArgumentNullException.ThrowIfNull(inventory);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(budget);
        var layers = inventory.Config.SubLayers;
        MemoryPlan? Fit(MemoryPolicy policy) => TryFit(inventory, policy, budget);

        if (inventory.StaticBytes + inventory.Target.ContextAllowanceBytes <= budget)
        {
            if (Fit(MemoryPolicy.Store) is { } store) return store;
            var selective = Fit(MemoryPolicy.Selective);
            var every = LargestFitting(Fit, MemoryPolicy.Every, 1, layers - 1, (int)Math.Ceiling(Math.Sqrt(layers)));
            if (selective is not null || every is not null)
                return new[] { selective, every }.OfType<MemoryPlan>().MinBy(p => p.RecomputeFlops)!;
            return LargestFitting(Fit, MemoryPolicy.Binomial, 1, layers, 1);
        }
        return null;
    }

    /// <summary>The plan needing the least memory: binomial checkpointing with one slot (the embedding output).</summary>
    public static MemoryPlan Smallest(MemoryInventory inventory) => Plan(inventory, MemoryPolicy.Binomial(1));

    /// <summary>
    /// The largest even number of sub-layers, at most the config's, with which the model (otherwise unchanged) fits
    /// <paramref name="budget"/> under <see cref="Auto"/> (on each of <paramref name="sharding"/>'s ranks); 0 when not even two fit. Auto finds a plan exactly when the
    /// plan needing the least memory (<see cref="Smallest"/>) fits, so that is what each candidate depth is checked with:
    /// first the deepest whose static state alone fits, then shallower ones, stepping down by as many sub-layer pairs as
    /// the overshoot is worth in static state (whose size is the same for every pair).
    /// </summary>
    public static int LargestDepth(ModelConfig config, ModelPrecision precision, int batchSize, MemoryTarget target, long budget, Distributed.Sharding? sharding = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(target);
        MemoryInventory Inventory(int layers) => new(config with { SubLayers = layers }, precision, batchSize, target, sharding);
        // Every pair adds the same parameter tensors at the same alignment, so the static state is affine in the pairs.
        long two = Inventory(2).StaticBytes + target.ContextAllowanceBytes, perPair = Math.Max(1, Inventory(4).StaticBytes + target.ContextAllowanceBytes - two);
        var pairs = two > budget ? 0 : (int)Math.Min(config.SubLayers / 2, 1 + (budget - two) / perPair);
        for (var layers = 2 * pairs; layers >= 2;)
        {
            var smallest = Smallest(Inventory(layers));
            if (smallest.Fits(budget)) return layers;
            layers -= 2 * (int)Math.Clamp((smallest.TotalBytes - budget + perPair - 1) / Math.Max(1, perPair), 1, layers);
        }
        return 0;
    }

    /// <summary>The plan of <paramref name="policy"/> when it fits, else null; the lower bound rejects most misses before packing.</summary>
    private static MemoryPlan? TryFit(MemoryInventory inventory, MemoryPolicy policy, long budget)
    {
        var schedule = ScheduleBuilder.Build(inventory, policy);
        var requests = schedule.Resources.Select(r => new ArenaRequest(r.Bytes, r.Lifetimes)).ToArray();
        var (lower, _) = ArenaPacking.PeakLiveBytes(requests, schedule.Ops.Count);
        var fixedBytes = new MemoryPlan(inventory, policy, schedule, new ArenaLayout([], 0, 0, 0)).TotalBytes;
        if (fixedBytes + inventory.Target.Allocated(lower) > budget) return null;
        var plan = new MemoryPlan(inventory, policy, schedule, ArenaPacking.Pack(requests, schedule.Ops.Count));
        return plan.Fits(budget) ? plan : null;
    }

    /// <summary>
    /// The plan of the largest parameter in [<paramref name="low"/>, <paramref name="high"/>] that fits: by bisection on
    /// [<paramref name="monotoneFrom"/>, high], where fitting is monotone (a smaller parameter needs less memory), then one
    /// by one below it. Bisection tests the cheap large parameters first and the smallest only when all else fails.
    /// </summary>
    private static MemoryPlan? LargestFitting(Func<MemoryPolicy, MemoryPlan?> fit, Func<int, MemoryPolicy> policy, int low, int high, int monotoneFrom)
    {
        if (high < low) return null;
        var start = Math.Clamp(monotoneFrom, low, high);
        MemoryPlan? best = null;
        int lo = start - 1, hi = high;
        while (lo < hi)
        {
            var mid = (lo + hi + 1) / 2;
            if (fit(policy(mid)) is { } plan) (best, lo) = (plan, mid);
            else hi = mid - 1;
        }
        if (best is not null) return best;
        for (var p = start - 1; p >= low; p--)
            if (fit(policy(p)) is { } plan) return plan;
        return null;
    }

    private static MemoryBudgetException NothingFits(MemoryInventory inventory, long budget)
    {
        var smallest = Smallest(inventory);
        var text = string.Create(CultureInfo.InvariantCulture,
            $"No memory policy fits the budget of {ByteSize.Format(budget)} ({ByteSize.FormatGiB(budget)}) for {Describe(inventory)}. ");
        var fixedState = inventory.StaticBytes + inventory.Target.ContextAllowanceBytes;
        if (fixedState > budget)
        {
            var copy = inventory.OperandCopyBytes > 0
                ? FormattableString.Invariant($", {ByteSize.Format(inventory.OperandCopyBytes)} {inventory.Precision.Operand} weight copy")
                : "";
            text += FormattableString.Invariant(
                $"Parameters, gradients and optimizer state alone take {ByteSize.Format(inventory.StaticBytes)} ({inventory.Layout.ParameterCount / 1e9:0.00} B parameters: {ByteSize.Format(inventory.ParameterBytes)} {inventory.Precision.Master} master weights, {ByteSize.Format(inventory.GradientBytes)} gradients, {ByteSize.Format(inventory.OptimizerStateBytes)} AdamW moments{copy}). ");
        }
        text += FormattableString.Invariant(
            $"The smallest budget that fits is {ByteSize.Format(smallest.TotalBytes)} ({ByteSize.FormatGiB(smallest.TotalBytes)}, {smallest.Policy}, +{100 * smallest.RecomputeFraction:0}% FLOPs).");
        return new MemoryBudgetException(text, smallest.TotalBytes);
    }

    private static string Describe(MemoryInventory inventory)
    {
        var c = inventory.Config;
        return string.Create(CultureInfo.InvariantCulture, $"L = {c.SubLayers}, hidden {c.Hidden}, {inventory.BatchSize} × {c.SequenceLength} tokens");
    }
}
