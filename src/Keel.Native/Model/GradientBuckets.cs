using Keel.Native.Devices;

namespace Keel.Native.Model;

/// <summary>
/// Where a model's gradients live when they are not one flat buffer (ZeRO stage 2): the gradients of each sub-layer's
/// matrices, which are complete as soon as that sub-layer's backward has run, pass through one of a few bucket slots and
/// are reduced from there; the rest (the embedding, an untied LM head, every norm, and the flat buffer's padding), which
/// ops all through the backward add to, stays resident for the whole step.
/// <para>
/// In the flat layout the matrices of sub-layer l form one range, [<see cref="Start"/>(l), Start(l + 1)) (attention:
/// q, k, v, o of its block; feed-forward: gate, up, down), and the ranges of consecutive sub-layers touch, so the resident
/// part is a prefix [0, Start(0)) and a suffix [Start(L), flat length). A slot holds the longest sub-layer range; sub-layer
/// l uses slot l mod <see cref="Slots"/> at the same offsets as in the flat layout (relative to its range).
/// </para>
/// </summary>
public sealed class GradientBuckets
{
    /// <summary>Slots: one being reduced while the backward fills the other.</summary>
    public const int DefaultSlots = 2;

    private readonly long[] _starts;

    /// <summary>The buckets of <paramref name="layout"/> in a flat buffer of <paramref name="flatLength"/> elements (the layout's, or more with padding).</summary>
    public GradientBuckets(ParameterLayout layout, long flatLength, int slots = DefaultSlots)
    {
        ArgumentNullException.ThrowIfNull(layout);
        ArgumentOutOfRangeException.ThrowIfLessThan(flatLength, layout.Length);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(slots);
        var config = layout.Config;
        _starts = new long[config.SubLayers + 1];
        for (var l = 0; l < config.SubLayers; l++)
        {
            var block = l / 2;
            var first = l % 2 == 0 ? layout.QueryProjections[block]
                : config.FeedForward == FeedForwardKind.SwiGlu ? layout.UpProjections[block] - 1 : layout.UpProjections[block];
            _starts[l] = layout.Tensors[first].Offset;
        }
        var down = layout.Tensors[layout.DownProjections[config.Blocks - 1]];
        _starts[config.SubLayers] = ParameterLayout.Align(down.Offset + down.Length);
        SubLayers = config.SubLayers;
        FlatLength = flatLength;
        Slots = slots;
        SlotLength = Enumerable.Range(0, SubLayers).Max(l => _starts[l + 1] - _starts[l]);
    }

    /// <summary>Sub-layers (buckets).</summary>
    public int SubLayers { get; }

    /// <summary>Elements of the flat buffer these buckets cover.</summary>
    public long FlatLength { get; }

    /// <summary>Bucket slots.</summary>
    public int Slots { get; }

    /// <summary>Elements of one slot: the longest sub-layer range.</summary>
    public long SlotLength { get; }

    /// <summary>Elements kept for the whole step: the prefix before the first sub-layer and the suffix after the last.</summary>
    public long ResidentLength => _starts[0] + (FlatLength - _starts[SubLayers]);

    /// <summary>Elements the bucketed storage allocates: the resident part and the slots.</summary>
    public long StorageLength => ResidentLength + Slots * SlotLength;

    /// <summary>The first flat element of sub-layer <paramref name="subLayer"/>'s range (<see cref="SubLayers"/>: the end of the last).</summary>
    public long Start(int subLayer) => _starts[subLayer];

    /// <summary>Sub-layer <paramref name="subLayer"/>'s flat range.</summary>
    public (long Start, long Length) Range(int subLayer) => (_starts[subLayer], _starts[subLayer + 1] - _starts[subLayer]);

    /// <summary>The slot sub-layer <paramref name="subLayer"/>'s gradients pass through.</summary>
    public int SlotOf(int subLayer) => subLayer % Slots;

    /// <summary>The resident ranges of the flat buffer: the prefix and the suffix, each with its offset in the resident storage.</summary>
    public IEnumerable<(long FlatStart, long Length, long StorageOffset)> Resident()
    {
        if (_starts[0] > 0) yield return (0, _starts[0], 0);
        if (FlatLength > _starts[SubLayers]) yield return (_starts[SubLayers], FlatLength - _starts[SubLayers], _starts[0]);
    }

    /// <summary>
    /// The view of flat elements [<paramref name="offset"/>, offset + <paramref name="length"/>) in storage whose resident
    /// part is <paramref name="resident"/> and whose slots are <paramref name="slots"/> (one after the other).
    /// </summary>
    /// <exception cref="ArgumentException">The range crosses from one part into another.</exception>
    internal Tensor View(Tensor resident, Tensor slots, long offset, long length)
    {
        if (offset < _starts[0])
            return offset + length <= _starts[0] ? resident.Slice(offset, length) : throw Crossing(offset, length);
        if (offset >= _starts[SubLayers]) return resident.Slice(_starts[0] + offset - _starts[SubLayers], length);
        var l = Array.BinarySearch(_starts, offset);
        if (l < 0) l = ~l - 1;
        if (offset + length > _starts[l + 1]) throw Crossing(offset, length);
        return slots.Slice(SlotOf(l) * SlotLength + offset - _starts[l], length);
    }

    private static ArgumentException Crossing(long offset, long length) =>
        new($"Flat range [{offset}, {offset + length}) crosses a gradient bucket's edge.", nameof(offset));
}
