namespace Keel.Native.Memory;

/// <summary>
/// A policy written down for one model on one device kind: the step's schedule, the arena every activation lives in
/// (offsets from the schedule's lifetimes), and what the whole step takes in device memory. The model allocates exactly
/// this arena and runs exactly this schedule, so these figures are the allocation, not an estimate of it.
/// </summary>
public sealed class MemoryPlan
{
    internal MemoryPlan(MemoryInventory inventory, MemoryPolicy policy, StepSchedule schedule, ArenaLayout arena)
    {
        Inventory = inventory;
        Policy = policy;
        Schedule = schedule;
        Arena = arena;
        var target = inventory.Target;
        StaticBytes = inventory.StaticBuffers.Sum(b => target.Allocated(b.Bytes));
        WorkspaceBytes = inventory.Workspaces.Sum(w => target.Allocated(w.Bytes));
        RecomputeFlops = Math.Max(0, schedule.ForwardFlops - inventory.ChainForwardFlops);
    }

    /// <summary>What the plan is for.</summary>
    public MemoryInventory Inventory { get; }

    /// <summary>The policy (never <see cref="MemoryPolicyKind.Auto"/>: auto resolves to one of the others).</summary>
    public MemoryPolicy Policy { get; }

    /// <summary>The step's ops and resources.</summary>
    internal StepSchedule Schedule { get; }

    /// <summary>Each resource's offset, the arena's size and its lower bound.</summary>
    internal ArenaLayout Arena { get; }

    /// <summary>Parameters, gradients, optimizer state and operand copy as allocated (rounded to the device's granularity).</summary>
    public long StaticBytes { get; }

    /// <summary>The activation arena as allocated.</summary>
    public long ArenaBytes => Inventory.Target.Allocated(Arena.Bytes);

    /// <summary>The bytes no arena for this schedule can go below: the most that is live at one op.</summary>
    public long ArenaLowerBound => Arena.LowerBound;

    /// <summary>The packed arena over its lower bound (1 when packing is optimal).</summary>
    public double ArenaRatio => Arena.Ratio;

    /// <summary>Sub-layer forwards the step runs, recomputed ones included (L when nothing is recomputed).</summary>
    public long SubLayerForwards => Schedule.SubLayerForwards;

    /// <summary>GEMM workspace and the kernel launchers' scratch as allocated.</summary>
    public long WorkspaceBytes { get; }

    /// <summary>The device's fixed allowance (<see cref="MemoryTarget.ContextAllowanceBytes"/>).</summary>
    public long ContextBytes => Inventory.Target.ContextAllowanceBytes;

    /// <summary>Everything the step needs at once: static state, arena, workspaces and the context allowance (the arena is allocated whole, so this is also the peak).</summary>
    public long TotalBytes => StaticBytes + ArenaBytes + WorkspaceBytes + ContextBytes;

    /// <summary>Sub-layer forward FLOPs (and recomputed norms and activations) beyond one forward of each sub-layer.</summary>
    public double RecomputeFlops { get; }

    /// <summary><see cref="RecomputeFlops"/> as a fraction of the step's model FLOPs without recomputation.</summary>
    public double RecomputeFraction => Inventory.StepFlops > 0 ? RecomputeFlops / Inventory.StepFlops : 0;

    /// <summary>True when <see cref="TotalBytes"/> fits <paramref name="budget"/>.</summary>
    public bool Fits(long budget) => TotalBytes <= budget;

    /// <summary>The arena offset of resource <paramref name="resource"/> plus <paramref name="offset"/>.</summary>
    internal long Offset(int resource, long offset) => Arena.Offsets[resource] + offset;

    /// <inheritdoc />
    public override string ToString() =>
        $"{Policy}: {ByteSize.Format(TotalBytes)} total, arena {ByteSize.Format(ArenaBytes)} (lower bound {ByteSize.Format(Arena.LowerBound)}), recompute +{RecomputeFraction:P1} FLOPs";
}
