using Keel.Native.Model;

namespace Keel.Native.Memory;

/// <summary>
/// Writes a policy down as a step's schedule: which ops run in which order, and which resource each tensor of each op
/// lives in. Resources are reused wherever the policy allows (untaped forwards share one workspace, x and z between
/// untaped forwards ping-pong, tape slots serve one segment after another), and the arena packer then overlaps
/// whatever is not live at the same time.
/// </summary>
internal sealed class ScheduleBuilder
{
    private readonly MemoryInventory _inventory;
    private readonly int _layers;
    private readonly List<PlanResource> _resources = [];
    private readonly Dictionary<string, int> _byName = new(StringComparer.Ordinal);
    private readonly List<StepOp> _ops = [];
    private readonly Dictionary<string, TensorRef> _named = new(StringComparer.Ordinal);
    private readonly Dictionary<(IReadOnlyList<InventoryTensor> Specs, int XOut, int ZOut, int Others), TensorRef[]> _placements = [];
    private readonly Dictionary<(int, int), int[]> _pairs = [];
    private readonly Dictionary<TensorRef[], int[]> _writes = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<IReadOnlyList<InventoryTensor>, (int X, int Z)> _outputIndices = new(ReferenceEqualityComparer.Instance);
    private readonly int _batch, _input, _head, _gradients, _form;
    private readonly int[] _backwardWorkspace = new int[2];
    private readonly TensorRef[][] _scratch = new TensorRef[2][];
    private readonly ActivationSpec _zSpec;
    private int _forwardOpCount = -1;

    private ScheduleBuilder(MemoryInventory inventory)
    {
        _inventory = inventory;
        _layers = inventory.Config.SubLayers;
        var state = inventory.StateSpecs.ToDictionary(s => s.Name, StringComparer.Ordinal);
        var scratch = inventory.ScratchSpecs.ToDictionary(s => s.Name, StringComparer.Ordinal);
        _zSpec = state["z0"];
        _batch = Fixed("batch", ResourceRole.Batch, [state["tokens"], state["targets"], state["losses"]]);
        _input = Fixed("input", ResourceRole.InputStage, [.. new[] { "x0", "z0", "mean_in", "rstd_in" }.Where(state.ContainsKey).Select(n => state[n])]);
        _head = Fixed("head", ResourceRole.Head, [state["logits"], .. scratch.TryGetValue("d_logits", out var d) ? new[] { d } : []]);
        _gradients = Fixed("gradients", ResourceRole.Gradients, [scratch["dx_0"], scratch["dx_1"], scratch["dz_0"], scratch["dz_1"]]);
        _form = Fixed("form", ResourceRole.Form, [.. new[] { "y_scratch", "form_mean", "form_rstd" }.Where(scratch.ContainsKey).Select(n => scratch[n])]);
        var config = inventory.Config;
        var batch = inventory.BatchSize;
        var precision = inventory.Precision;
        ActivationSpec[][] branchScratch =
        [
            [scratch["d_f"], .. AttentionSubLayer.ScratchSpecs(config, precision, batch)],
            [scratch["d_f"], .. FeedForwardSubLayer.ScratchSpecs(config, precision, batch)],
        ];
        for (var kind = 0; kind < 2; kind++)
        {
            _backwardWorkspace[kind] = Resource($"backward-workspace.{KindName(kind)}", ResourceRole.BackwardWorkspace);
            _scratch[kind] = Place(_backwardWorkspace[kind], branchScratch[kind]);
        }
    }

    /// <summary>The schedule of <paramref name="policy"/> (not <see cref="MemoryPolicyKind.Auto"/>) for <paramref name="inventory"/>'s model.</summary>
    public static StepSchedule Build(MemoryInventory inventory, MemoryPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(inventory);
        ArgumentNullException.ThrowIfNull(policy);
        var builder = new ScheduleBuilder(inventory);
        builder.Add(new StepOp { Kind = StepOpKind.Embed, Reads = [builder._batch], Writes = [builder._input, builder._form] });
        switch (policy.Kind)
        {
            case MemoryPolicyKind.Store: builder.Store(); break;
            case MemoryPolicyKind.Selective: builder.Selective(); break;
            case MemoryPolicyKind.Every: builder.Segments(Math.Min(policy.Parameter, builder._layers)); break;
            // More slots than sub-layers change nothing: with s ≥ l every state can be kept.
            case MemoryPolicyKind.Binomial: builder.Binomial(Math.Min(policy.Parameter, builder._layers)); break;
            default: throw new ArgumentException($"{policy} is chosen by the planner, not scheduled directly.", nameof(policy));
        }
        builder.Add(new StepOp
        {
            Kind = StepOpKind.InputBackward,
            Reads = [builder._input, builder._gradients, builder._batch],
        });
        return new StepSchedule(builder._resources, builder._ops, builder._forwardOpCount, builder._named);
    }

    // ------------------------------------------------------------------------------------------------ policies

    /// <summary>Every sub-layer's forward writes its own tape; the backward reads them all.</summary>
    private void Store()
    {
        var tapes = new (TensorRef X, TensorRef Z, TensorRef[] Saved)[_layers];
        TensorRef x = _named["x0"], z = _named["z0"];
        for (var l = 0; l < _layers; l++)
        {
            var specs = _inventory.Tensors(l);
            var saved = Place(Resource($"tape[{l}]", ResourceRole.Tape), specs);
            Forward(l, x, z, saved, taped: true);
            tapes[l] = (x, z, saved);
            (x, z) = Outputs(specs, saved);
        }
        Head(z);
        for (var l = _layers - 1; l >= 0; l--) Backward(l, tapes[l].X, tapes[l].Z, tapes[l].Saved);
    }

    /// <summary>Tapes without z and h, which live in two alternating transient blocks and are recomputed before each backward.</summary>
    private void Selective()
    {
        var tapes = new TensorRef[_layers][];
        int[] transient = [Resource("transient[0]", ResourceRole.Stream), Resource("transient[1]", ResourceRole.Stream)];
        int recomputedZ = Resource("recomputed.z", ResourceRole.Recomputed), recomputedH = Resource("recomputed.h", ResourceRole.Recomputed);
        TensorRef x = _named["x0"], z = _named["z0"];
        for (var l = 0; l < _layers; l++)
        {
            var specs = _inventory.Tensors(l);
            var tape = Resource($"tape[{l}]", ResourceRole.Tape);
            var saved = Place(specs, i => Dropped(specs[i].Spec.Name) ? transient[l % 2] : tape);
            Forward(l, x, z, saved, taped: true);
            tapes[l] = saved;
            (x, z) = Outputs(specs, saved);
        }
        Head(z);
        for (var l = _layers - 1; l >= 0; l--)
        {
            var specs = _inventory.Tensors(l);
            var saved = (TensorRef[])tapes[l].Clone();
            var xl = l == 0 ? _named["x0"] : Outputs(_inventory.Tensors(l - 1), tapes[l - 1]).X;
            var zl = l == 0 ? _named["z0"] : FormInput(l, xl, recomputedZ);
            saved[Index(specs, "z_out")] = TensorRef.None;
            var h = IndexOrNone(specs, "h");
            if (h >= 0)
            {
                var pre = saved[IndexOrNone(specs, "gate_up") is var g and >= 0 ? g : Index(specs, "u")];
                saved[h] = Place(recomputedH, [specs[h].Spec])[0];
                Add(new StepOp { Kind = StepOpKind.RecomputeActivation, SubLayer = l, X = pre, Z = saved[h], Reads = [pre.Resource], Writes = [recomputedH], Flops = _inventory.ActivationFlops });
            }
            Backward(l, xl, zl, saved);
        }

        static bool Dropped(string name) => name is "z_out" or "h";
    }

    /// <summary>
    /// Segments of <paramref name="k"/> sub-layers counted from the end (the first may be shorter): x is kept at each segment
    /// start, the last segment keeps its tapes, every other segment runs forward untaped and again, taped, just before its
    /// backward.
    /// </summary>
    private void Segments(int k)
    {
        var lastStart = _layers - k;
        var starts = new List<int>();
        for (var s = lastStart; s > 0; s -= k) starts.Add(s);
        starts.Add(0);
        starts.Reverse();
        var checkpoints = new Dictionary<int, int>();
        foreach (var s in starts.Where(s => s > 0)) checkpoints[s] = Resource($"checkpoint[{s}]", ResourceRole.Checkpoint);
        var stream = StreamResources();
        var recomputedZ = Resource("recomputed.z", ResourceRole.Recomputed);

        var kept = new Dictionary<int, TensorRef> { [0] = _named["x0"] };
        TensorRef x = _named["x0"], z = _named["z0"];
        if (lastStart > 0)
            (x, z) = Advance(0, lastStart, x, z, stream, l => checkpoints.TryGetValue(l + 1, out var c) ? c : -1, (l, xOut) => kept[l + 1] = xOut);
        var tapes = new (TensorRef X, TensorRef Z, TensorRef[] Saved)[_layers];
        TapedRun(lastStart, _layers, x, z, tapes);
        Head(Outputs(_inventory.Tensors(_layers - 1), tapes[_layers - 1].Saved).Z);
        for (var l = _layers - 1; l >= lastStart; l--) Backward(l, tapes[l].X, tapes[l].Z, tapes[l].Saved);

        for (var s = starts.Count - 2; s >= 0; s--)
        {
            int a = starts[s], b = starts[s + 1];
            var xa = kept[a];
            var za = a == 0 ? _named["z0"] : FormInput(a, xa, recomputedZ);
            TapedRun(a, b, xa, za, tapes);
            for (var l = b - 1; l >= a; l--) Backward(l, tapes[l].X, tapes[l].Z, tapes[l].Saved);
        }
    }

    /// <summary>Revolve's schedule for <paramref name="slots"/> slots: slot 0 is x0, the others hold one x each.</summary>
    private void Binomial(int slots)
    {
        var actions = Revolve.Schedule(_layers, slots);
        var stream = StreamResources();
        var recomputedZ = Resource("recomputed.z", ResourceRole.Recomputed);
        var slotResources = new int[slots];
        var slotRefs = new TensorRef[slots];
        var slotPositions = new int[slots];
        for (var k = 1; k < slots; k++) slotResources[k] = Resource($"slot[{k}]", ResourceRole.Checkpoint);
        int[] tapes = [Resource("tape.attention", ResourceRole.Tape), Resource("tape.feed-forward", ResourceRole.Tape)];
        TensorRef x = _named["x0"], z = _named["z0"];
        for (var i = 0; i < actions.Count; i++)
        {
            var action = actions[i];
            switch (action.Kind)
            {
                case RevolveActionKind.TakeSnapshot when action.Slot == 0:
                    slotRefs[0] = _named["x0"];
                    break;
                case RevolveActionKind.TakeSnapshot:
                    // The advance before it wrote x straight into the slot (see below); a snapshot anywhere else would need a copy.
                    if (slotRefs[action.Slot].IsNone || slotPositions[action.Slot] != action.Position || slotRefs[action.Slot] != x)
                        throw new InvalidOperationException($"Revolve asked for a snapshot the schedule cannot take without a copy: {action}.");
                    break;
                case RevolveActionKind.Advance:
                    // A snapshot right after the advance is written by its last forward straight into the slot.
                    var end = action.Position + action.Count;
                    var snapshot = i + 1 < actions.Count && actions[i + 1] is { Kind: RevolveActionKind.TakeSnapshot, Slot: > 0 } next ? next.Slot : -1;
                    (x, z) = Advance(action.Position, action.Count, x, z, stream, l => l + 1 == end && snapshot >= 0 ? slotResources[snapshot] : -1,
                                     (l, xOut) => (slotRefs[snapshot], slotPositions[snapshot]) = (xOut, l + 1));
                    break;
                case RevolveActionKind.Restore:
                    x = slotRefs[action.Slot];
                    z = action.Position == 0 ? _named["z0"] : FormInput(action.Position, x, recomputedZ);
                    break;
                case RevolveActionKind.ReverseStep:
                    var l2 = action.Position;
                    var specs = _inventory.Tensors(l2);
                    var saved = Place(tapes[l2 % 2], specs);
                    Forward(l2, x, z, saved, taped: true);
                    if (l2 == _layers - 1) Head(Outputs(specs, saved).Z);
                    Backward(l2, x, z, saved);
                    break;
            }
        }
    }

    // ------------------------------------------------------------------------------------------------ pieces

    /// <summary>
    /// x and z ping-pong blocks and one workspace for forwards that keep nothing (sized for either kind: an advance runs
    /// both kinds within one op, so two workspaces would both be live there).
    /// </summary>
    private (int[] X, int[] Z, int Workspace) StreamResources() =>
        ([Resource("stream.x[0]", ResourceRole.Stream), Resource("stream.x[1]", ResourceRole.Stream)],
         [Resource("stream.z[0]", ResourceRole.Stream), Resource("stream.z[1]", ResourceRole.Stream)],
         Resource("untaped", ResourceRole.Untaped));

    /// <summary>
    /// One <see cref="StepOpKind.Advance"/> op over [<paramref name="from"/>, from + <paramref name="count"/>): sub-layer l
    /// writes x_out into <paramref name="keepX"/>(l) when that is ≥ 0 (a checkpoint; <paramref name="kept"/> hears of it),
    /// else into the stream. Returns the last x and z.
    /// </summary>
    private (TensorRef X, TensorRef Z) Advance(int from, int count, TensorRef x, TensorRef z, (int[] X, int[] Z, int Workspace) stream,
                                               Func<int, int> keepX, Action<int, TensorRef> kept)
    {
        var steps = new TensorRef[count][];
        var writes = new List<int>();
        var seen = new HashSet<TensorRef[]>(ReferenceEqualityComparer.Instance);
        double flops = 0;
        TensorRef x0 = x, z0 = z;
        for (var j = 0; j < count; j++)
        {
            var l = from + j;
            var specs = _inventory.Tensors(l);
            var keep = keepX(l);
            int xOut = keep >= 0 ? keep : stream.X[l % 2], zOut = stream.Z[l % 2];
            var key = (specs, xOut, zOut, stream.Workspace);
            if (!_placements.TryGetValue(key, out var saved))
                _placements[key] = saved = Place(specs, i => specs[i].Spec.Name switch { "x_out" => xOut, "z_out" => zOut, _ => stream.Workspace });
            if (seen.Add(saved))
                foreach (var r in WritesOf(saved))
                    if (!writes.Contains(r)) writes.Add(r);
            steps[j] = saved;
            flops += _inventory.ForwardFlops(l);
            (x, z) = Outputs(specs, saved);
            if (keep >= 0) kept(l, x);
        }
        Add(new StepOp
        {
            Kind = StepOpKind.Advance, SubLayer = from, Count = count, X = x0, Z = z0, Steps = steps,
            Reads = Pair(x0.Resource, z0.Resource), Writes = [.. writes], Flops = flops,
        });
        return (x, z);
    }

    /// <summary>Taped forwards of [a, b), sub-layer a + j into tape slot j of its kind.</summary>
    private void TapedRun(int a, int b, TensorRef x, TensorRef z, (TensorRef X, TensorRef Z, TensorRef[] Saved)[] tapes)
    {
        for (var l = a; l < b; l++)
        {
            var specs = _inventory.Tensors(l);
            var slot = Resource($"tape-slot[{l - a}].{KindName(l % 2)}", ResourceRole.Tape);
            var key = (specs, slot, slot, slot);
            if (!_placements.TryGetValue(key, out var saved)) _placements[key] = saved = Place(slot, specs);
            Forward(l, x, z, saved, taped: true);
            tapes[l] = (x, z, saved);
            (x, z) = Outputs(specs, saved);
        }
    }

    private void Forward(int l, TensorRef x, TensorRef z, TensorRef[] saved, bool taped)
    {
        var writes = WritesOf(saved);
        if (Array.IndexOf(writes, x.Resource) >= 0 || Array.IndexOf(writes, z.Resource) >= 0)
            throw new InvalidOperationException($"Forward({l}) would overwrite its own input.");
        Add(new StepOp
        {
            Kind = StepOpKind.Forward, SubLayer = l, Taped = taped, X = x, Z = z, Saved = saved,
            Reads = Pair(x.Resource, z.Resource), Writes = writes, Flops = _inventory.ForwardFlops(l),
        });
    }

    private void Backward(int l, TensorRef x, TensorRef z, TensorRef[] saved)
    {
        var reads = new HashSet<int> { x.Resource, z.Resource, _gradients };
        foreach (var t in saved)
            if (!t.IsNone) reads.Add(t.Resource);
        Add(new StepOp
        {
            Kind = StepOpKind.Backward, SubLayer = l, X = x, Z = z, Saved = saved, Scratch = _scratch[l % 2],
            Reads = [.. reads], Writes = [_gradients, _backwardWorkspace[l % 2]],
        });
    }

    private TensorRef FormInput(int l, TensorRef x, int resource)
    {
        var z = Place(resource, [_zSpec])[0];
        Add(new StepOp { Kind = StepOpKind.FormInput, SubLayer = l, X = x, Z = z, Reads = [x.Resource], Writes = [resource, _form], Flops = _inventory.InputNormFlops });
        return z;
    }

    /// <summary>The head and the loss (the end of the forward pass), then the head's backward.</summary>
    private void Head(TensorRef z)
    {
        Add(new StepOp { Kind = StepOpKind.Head, Z = z, Reads = Pair(z.Resource, _batch), Writes = [_head] });
        _forwardOpCount = _ops.Count;
        Add(new StepOp { Kind = StepOpKind.HeadBackward, Z = z, Reads = Pair(_head, z.Resource), Writes = [_head, _gradients] });
    }

    private void Add(StepOp op) => _ops.Add(op);

    private int[] Pair(int a, int b)
    {
        if (!_pairs.TryGetValue((a, b), out var pair)) _pairs[(a, b)] = pair = a == b ? [a] : [a, b];
        return pair;
    }

    /// <summary>The resources a placement writes (cached per placement: untaped forwards share theirs).</summary>
    private int[] WritesOf(TensorRef[] saved)
    {
        if (!_writes.TryGetValue(saved, out var writes)) _writes[saved] = writes = Distinct(saved);
        return writes;
    }

    private static int[] Distinct(TensorRef[] refs)
    {
        var list = new List<int>(3);
        foreach (var t in refs)
            if (!t.IsNone && !list.Contains(t.Resource)) list.Add(t.Resource);
        return [.. list];
    }

    private (TensorRef X, TensorRef Z) Outputs(IReadOnlyList<InventoryTensor> specs, TensorRef[] saved)
    {
        if (!_outputIndices.TryGetValue(specs, out var at)) _outputIndices[specs] = at = (Index(specs, "x_out"), Index(specs, "z_out"));
        return (saved[at.X], saved[at.Z]);
    }

    private static int Index(IReadOnlyList<InventoryTensor> specs, string name) =>
        IndexOrNone(specs, name) is var i and >= 0 ? i : throw new InvalidOperationException($"No tensor named {name}.");

    private static int IndexOrNone(IReadOnlyList<InventoryTensor> specs, string name)
    {
        for (var i = 0; i < specs.Count; i++)
            if (specs[i].Spec.Name == name) return i;
        return -1;
    }

    private static string KindName(int kind) => kind == 0 ? "attention" : "feed-forward";

    // ------------------------------------------------------------------------------------------------ resources

    private int Resource(string name, ResourceRole role)
    {
        if (_byName.TryGetValue(name, out var id)) return id;
        id = _resources.Count;
        _resources.Add(new PlanResource(id, name, role));
        _byName[name] = id;
        return id;
    }

    private int Fixed(string name, ResourceRole role, ActivationSpec[] specs)
    {
        var id = Resource(name, role);
        var refs = Place(id, specs);
        for (var i = 0; i < specs.Length; i++) _named[specs[i].Name] = refs[i];
        return id;
    }

    /// <summary>Lays <paramref name="specs"/> out one after another (aligned) from the start of <paramref name="resource"/>.</summary>
    private TensorRef[] Place(int resource, IReadOnlyList<ActivationSpec> specs)
    {
        var refs = new TensorRef[specs.Count];
        long offset = 0;
        for (var i = 0; i < specs.Count; i++)
        {
            refs[i] = new TensorRef(resource, offset, specs[i]);
            offset += ArenaPacking.Align(specs[i].ByteLength);
        }
        var r = _resources[resource];
        r.Bytes = Math.Max(r.Bytes, offset);
        return refs;
    }

    private TensorRef[] Place(int resource, IReadOnlyList<InventoryTensor> specs) => Place(specs, _ => resource);

    /// <summary>Lays each tensor out in the resource <paramref name="where"/> names, in order within each resource.</summary>
    private TensorRef[] Place(IReadOnlyList<InventoryTensor> specs, Func<int, int> where)
    {
        var refs = new TensorRef[specs.Count];
        var cursors = new Dictionary<int, long>(4);
        for (var i = 0; i < specs.Count; i++)
        {
            var resource = where(i);
            var offset = cursors.GetValueOrDefault(resource);
            refs[i] = new TensorRef(resource, offset, specs[i].Spec);
            cursors[resource] = offset + ArenaPacking.Align(specs[i].Bytes);
        }
        foreach (var (resource, end) in cursors)
            _resources[resource].Bytes = Math.Max(_resources[resource].Bytes, end);
        return refs;
    }
}
