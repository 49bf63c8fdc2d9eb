using Keel.Native.Model;

namespace Keel.Native.Memory;

/// <summary>What one op of a step's schedule runs.</summary>
internal enum StepOpKind
{
    /// <summary>x0 = embed(tokens) and the input stage z0 = N_in(x0).</summary>
    Embed,

    /// <summary>z_l = N_in(x_l) again from a kept x_l (<see cref="KeelModel.FormInput"/>): X is read, Z written.</summary>
    FormInput,

    /// <summary>Sub-layer l's forward from (X, Z) = (x_l, z_l), writing its tensors where <see cref="StepOp.Saved"/> says.</summary>
    Forward,

    /// <summary>
    /// Sub-layers SubLayer .. SubLayer + Count − 1 forward, one after another, keeping nothing but what
    /// <see cref="StepOp.Steps"/> places in checkpoints: the first reads (X, Z), each later one its predecessor's x_out
    /// and z_out. One op for the run, so a long chain of recomputation costs the schedule one entry.
    /// </summary>
    Advance,

    /// <summary>The FFN activation h again from the kept pre-activation: X (gate_up or u) read, Z (h) written.</summary>
    RecomputeActivation,

    /// <summary>The LM head on Z = z_L, and the loss (and dLogits when training).</summary>
    Head,

    /// <summary>The LM head's backward: its weight gradient and the gradient reaching z_L.</summary>
    HeadBackward,

    /// <summary>Sub-layer l's backward from (X, Z) and its kept tensors (<see cref="StepOp.Saved"/>).</summary>
    Backward,

    /// <summary>The input stage's and the embedding's backward.</summary>
    InputBackward,
}

/// <summary>Where a tensor lives: a resource of the schedule and a byte offset inside it, with the tensor's spec.</summary>
/// <param name="Resource">Index into <see cref="StepSchedule.Resources"/>, or −1 for none.</param>
/// <param name="Offset">Bytes from the resource's start (a multiple of <see cref="ArenaPacking.Alignment"/>).</param>
/// <param name="Spec">Its name, shape and element type.</param>
internal readonly record struct TensorRef(int Resource, long Offset, ActivationSpec? Spec)
{
    /// <summary>No tensor.</summary>
    public static TensorRef None => new(-1, 0, null);

    /// <summary>True for <see cref="None"/>.</summary>
    public bool IsNone => Resource < 0;
}

/// <summary>What a resource holds, for reports.</summary>
internal enum ResourceRole
{
    /// <summary>Token ids, targets and losses (live for the whole step: the host writes and reads them around it).</summary>
    Batch,
    /// <summary>x0, z0 and the input stage's statistics.</summary>
    InputStage,
    /// <summary>Logits (dLogits in place) and their operand-typed copy.</summary>
    Head,
    /// <summary>The gradients flowing back along the chain (two ping-pong pairs dx, dz).</summary>
    Gradients,
    /// <summary>The standalone input norm's y and statistics (written, never read).</summary>
    Form,
    /// <summary>A backward's temporaries (d_f and the branch's gradients).</summary>
    BackwardWorkspace,
    /// <summary>Tensors a taped forward keeps for its backward.</summary>
    Tape,
    /// <summary>A kept residual stream x_l (segment start or snapshot slot).</summary>
    Checkpoint,
    /// <summary>x or z between two consecutive forwards that keep nothing.</summary>
    Stream,
    /// <summary>An untaped forward's temporaries.</summary>
    Untaped,
    /// <summary>A tensor recomputed just before the backward that reads it.</summary>
    Recomputed,
}

/// <summary>
/// A block of the arena that ops write and read as a whole; it keeps one offset for the whole step and may hold different
/// values at different times (a workspace every sub-layer reuses).
/// </summary>
internal sealed class PlanResource
{
    internal PlanResource(int id, string name, ResourceRole role)
    {
        Id = id;
        Name = name;
        Role = role;
    }

    /// <summary>Its index in <see cref="StepSchedule.Resources"/>.</summary>
    public int Id { get; }

    /// <summary>A name for reports, such as <c>tape[12]</c> or <c>checkpoint[64]</c>.</summary>
    public string Name { get; }

    /// <summary>What it holds.</summary>
    public ResourceRole Role { get; }

    /// <summary>Its size: the largest set of tensors any op places in it (aligned).</summary>
    public long Bytes { get; internal set; }

    /// <summary>When it holds a value something still reads, derived from the ops' reads and writes.</summary>
    public IReadOnlyList<Lifetime> Lifetimes { get; internal set; } = [];
}

/// <summary>One op of a step. Which fields matter depends on <see cref="Kind"/>.</summary>
internal sealed class StepOp
{
    /// <summary>What it runs.</summary>
    public StepOpKind Kind { get; init; }

    /// <summary>The sub-layer, or −1.</summary>
    public int SubLayer { get; init; } = -1;

    /// <summary>For <see cref="StepOpKind.Forward"/>: true when a backward reads what it writes (its tape); Advance keeps no tape.</summary>
    public bool Taped { get; init; }

    /// <summary>x_l (Forward, Backward, FormInput), or the kept pre-activation (RecomputeActivation).</summary>
    public TensorRef X { get; init; } = TensorRef.None;

    /// <summary>z_l (Forward, Backward, Head, HeadBackward; written by FormInput), or h (written by RecomputeActivation).</summary>
    public TensorRef Z { get; init; } = TensorRef.None;

    /// <summary>Forward and Backward: where each tensor of the sub-layer's spec list lives (<see cref="TensorRef.None"/> where a backward does not read it).</summary>
    public IReadOnlyList<TensorRef> Saved { get; init; } = [];

    /// <summary>Advance: the number of sub-layers it runs.</summary>
    public int Count { get; init; }

    /// <summary>Advance: for each sub-layer it runs, where its tensors go (shared between steps that place them alike).</summary>
    public IReadOnlyList<TensorRef[]> Steps { get; init; } = [];

    /// <summary>Backward: d_f then the branch's gradient temporaries (<see cref="KeelModel.ScratchSpecs"/> order).</summary>
    public IReadOnlyList<TensorRef> Scratch { get; init; } = [];

    /// <summary>Resources it reads.</summary>
    public IReadOnlyList<int> Reads { get; init; } = [];

    /// <summary>Resources it writes.</summary>
    public IReadOnlyList<int> Writes { get; init; } = [];

    /// <summary>Forward FLOPs it does (sub-layer forwards, recomputed norms and activations; 0 for the rest).</summary>
    public double Flops { get; init; }

    /// <inheritdoc />
    public override string ToString() => Kind switch
    {
        StepOpKind.Advance => $"Advance({SubLayer}..{SubLayer + Count - 1})",
        _ when SubLayer >= 0 => $"{Kind}({SubLayer})",
        _ => Kind.ToString(),
    };
}

/// <summary>
/// The ops of one training step in order, the resources they read and write, and each resource's lifetimes derived from
/// them: an op that writes a resource without reading it starts a new value; every later read extends that value's
/// lifetime. Ops [0, <see cref="ForwardOpCount"/>) are the forward pass (through the loss), the rest the backward.
/// </summary>
internal sealed class StepSchedule
{
    internal StepSchedule(IReadOnlyList<PlanResource> resources, IReadOnlyList<StepOp> ops, int forwardOpCount, IReadOnlyDictionary<string, TensorRef> named)
    {
        Resources = resources;
        Ops = ops;
        ForwardOpCount = forwardOpCount;
        Named = named;
        DeriveLifetimes();
    }

    /// <summary>The arena's blocks.</summary>
    public IReadOnlyList<PlanResource> Resources { get; }

    /// <summary>The ops, in order.</summary>
    public IReadOnlyList<StepOp> Ops { get; }

    /// <summary>Ops of the forward pass (through the head and loss).</summary>
    public int ForwardOpCount { get; }

    /// <summary>The model's own tensors by name: tokens, targets, losses, x0, z0, mean_in, rstd_in, logits, d_logits, dx_0, dx_1, dz_0, dz_1, y_scratch, form_mean, form_rstd.</summary>
    public IReadOnlyDictionary<string, TensorRef> Named { get; }

    /// <summary>Forward FLOPs of all ops (sub-layer forwards, each as often as it runs, and recomputed norms and activations).</summary>
    public double ForwardFlops => Ops.Sum(op => op.Flops);

    /// <summary>How many sub-layer forwards the ops run (taped or not).</summary>
    public long SubLayerForwards => Ops.Sum(op => op.Kind switch { StepOpKind.Forward => 1L, StepOpKind.Advance => op.Count, _ => 0L });

    private void DeriveLifetimes()
    {
        var lifetimes = Resources.Select(_ => new List<Lifetime>()).ToArray();
        for (var i = 0; i < Ops.Count; i++)
        {
            var op = Ops[i];
            foreach (var r in op.Reads)
            {
                if (Resources[r].Role == ResourceRole.Batch) continue;
                var list = lifetimes[r];
                if (list.Count == 0)
                    throw new InvalidOperationException($"Op {i} ({op}) reads {Resources[r].Name} before anything wrote it.");
                list[^1] = list[^1] with { Last = i };
            }
            foreach (var r in op.Writes)
            {
                if (Contains(op.Reads, r)) continue;
                var list = lifetimes[r];
                if (list.Count > 0 && list[^1].Last == i)
                    throw new InvalidOperationException($"Op {i} ({op}) writes {Resources[r].Name} twice.");
                list.Add(new Lifetime(i, i));
            }
        }
        for (var r = 0; r < Resources.Count; r++)
        {
            // The batch is written by the host before the step and read after it (the losses).
            Resources[r].Lifetimes = Resources[r].Role == ResourceRole.Batch && Ops.Count > 0 ? [new Lifetime(0, Ops.Count - 1)] : lifetimes[r];
        }
    }

    private static bool Contains(IReadOnlyList<int> list, int value)
    {
        for (var i = 0; i < list.Count; i++)
            if (list[i] == value) return true;
        return false;
    }
}
