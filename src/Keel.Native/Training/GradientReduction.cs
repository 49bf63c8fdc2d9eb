using Keel.Native.Devices;
using Keel.Native.Distributed;
using Keel.Native.Model;

namespace Keel.Native.Training;

/// <summary>
/// Sums the gradients of a data-parallel step over the ranks, as the plan's ZeRO stage asks:
/// <list type="bullet">
/// <item>stage 0: after the step's last micro-batch, an all-reduce of the flat gradients in place (every rank then holds
/// the whole sum, and runs the same optimizer step on it);</item>
/// <item>stage 1: after the last micro-batch, a reduce-scatter of the flat gradients into the optimizer's gradient shard;</item>
/// <item>stage 2: during the backward, as each sub-layer's matrix gradients are complete in their bucket slot, a reduce of
/// each part of the slot to the rank that owns it (into that rank's gradient shard), overlapping the rest of the backward
/// on GPUs; the resident gradients (embedding, norms, LM head) after the last micro-batch. With several micro-batches the
/// owner's part of a slot is primed with what its shard has summed so far, so the reduce adds the new micro-batch to it.</item>
/// </list>
/// Every rank makes the same collective calls in the same order; the parts of each bucket are computed once, so a step
/// allocates nothing.
/// </summary>
internal sealed class GradientReduction : IGradientBucketObserver
{
    private readonly KeelModel _model;
    private readonly AdamWOptimizer _optimizer;
    private readonly ICollectives _collectives;
    private readonly IDevice _device;
    private readonly int _stage;
    private readonly GradientBuckets? _buckets;
    private readonly Part[][] _subLayerParts = [];
    private readonly Part[] _residentParts = [];
    private readonly CollectiveFence[] _slotFences = [];
    private readonly Tensor[] _slots = [];

    /// <summary>One piece of a gradient buffer that belongs to one rank's shard.</summary>
    /// <param name="Offset">First element in the buffer (a slot, or the resident gradients).</param>
    /// <param name="Length">Elements.</param>
    /// <param name="Owner">The rank whose shard it is.</param>
    /// <param name="ShardOffset">First element in the owner's gradient shard.</param>
    private readonly record struct Part(long Offset, long Length, int Owner, long ShardOffset);

    public GradientReduction(KeelModel model, AdamWOptimizer optimizer, ICollectives collectives)
    {
        _model = model;
        _optimizer = optimizer;
        _collectives = collectives;
        _device = model.Device;
        var sharding = model.Plan.Inventory.Sharding;
        _stage = sharding.Stage;
        _buckets = model.GradientBuckets;
        if (_buckets is null) return;

        var shard = sharding.ShardLength(model.Layout.Length);
        _subLayerParts = new Part[_buckets.SubLayers][];
        for (var l = 0; l < _buckets.SubLayers; l++)
        {
            var (start, length) = _buckets.Range(l);
            _subLayerParts[l] = [.. Split(start, length, shard, storageOffset: 0)];
        }
        _residentParts = [.. _buckets.Resident().SelectMany(r => Split(r.FlatStart, r.Length, shard, r.StorageOffset))];
        _slots = [.. Enumerable.Range(0, _buckets.Slots).Select(model.GradientSlot)];
        _slotFences = new CollectiveFence[_buckets.Slots];
        model.BucketObserver = this;
    }

    /// <summary>The micro-batch whose backward runs next (0 for the step's first).</summary>
    public int MicroBatch { get; set; }

    /// <summary>Reduces what is left after the step's last backward and orders the optimizer's reads after every reduction.</summary>
    public void Finish()
    {
        switch (_stage)
        {
            case 0:
                _collectives.AllReduceSum(_model.FlatGradients);
                break;
            case 1:
                _collectives.ReduceScatterSum(_model.FlatGradients, _optimizer.Gradients);
                break;
            default:
                // The buckets' reductions first: collectives of one communicator must not run beside each other.
                foreach (var fence in _slotFences) _collectives.Wait(fence);
                Reduce(_model.ResidentGradients, _residentParts);
                break;
        }
    }

    /// <inheritdoc />
    public void BeforeBackward(int subLayer)
    {
        var slotIndex = _buckets!.SlotOf(subLayer);
        var slot = _slots[slotIndex];
        // The slot's last reduction must have read it before it is written again.
        _collectives.Wait(_slotFences[slotIndex]);
        _device.Clear(slot);
        if (MicroBatch == 0) return;
        foreach (var part in _subLayerParts[subLayer])
            if (part.Owner == _collectives.Rank)
                _device.Copy(_optimizer.Gradients.Slice(part.ShardOffset, part.Length), slot.Slice(part.Offset, part.Length));
    }

    /// <inheritdoc />
    public void AfterBackward(int subLayer)
    {
        var slotIndex = _buckets!.SlotOf(subLayer);
        _collectives.BeginOverlap();
        Reduce(_slots[slotIndex], _subLayerParts[subLayer]);
        _slotFences[slotIndex] = _collectives.EndOverlap();
    }

    private void Reduce(Tensor buffer, Part[] parts)
    {
        foreach (var part in parts)
            _collectives.ReduceSum(buffer.Slice(part.Offset, part.Length),
                                   part.Owner == _collectives.Rank ? _optimizer.Gradients.Slice(part.ShardOffset, part.Length) : default, part.Owner);
    }

    /// <summary>The pieces of flat range [start, start + length) by owning shard; offsets relative to <paramref name="storageOffset"/> for the flat start.</summary>
    private static IEnumerable<Part> Split(long start, long length, long shard, long storageOffset)
    {
        for (var at = start; at < start + length;)
        {
            var owner = (int)(at / shard);
            var end = Math.Min(start + length, (owner + 1) * shard);
            yield return new Part(storageOffset + at - start, end - at, owner, at - owner * shard);
            at = end;
        }
    }
}
