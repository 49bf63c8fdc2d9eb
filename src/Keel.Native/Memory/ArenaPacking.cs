namespace Keel.Native.Memory;

/// <summary>The ops of a schedule, inclusive, during which a buffer holds a value something will still read.</summary>
/// <param name="First">The op that writes the value.</param>
/// <param name="Last">The last op that reads it (First when nothing after the writer does).</param>
internal readonly record struct Lifetime(int First, int Last)
{
    /// <summary>True when the two share an op.</summary>
    public bool Overlaps(Lifetime other) => First <= other.Last && other.First <= Last;
}

/// <summary>A buffer to place in the arena: its size and every interval it is live (in increasing, disjoint order).</summary>
/// <param name="Bytes">Its size.</param>
/// <param name="Lifetimes">When it is live; empty for a buffer the schedule never uses (it gets no space).</param>
internal sealed record ArenaRequest(long Bytes, IReadOnlyList<Lifetime> Lifetimes);

/// <summary>Where each buffer lives in the arena, the arena's size, and the bound no placement can beat.</summary>
/// <param name="Offsets">Each request's offset in bytes (multiples of <see cref="ArenaPacking.Alignment"/>).</param>
/// <param name="Bytes">The arena's size: the highest end of any placed buffer.</param>
/// <param name="LowerBound">The most bytes live at any one op (peak live bytes): no arena can be smaller.</param>
/// <param name="PeakOp">The first op at which <see cref="LowerBound"/> bytes are live.</param>
internal sealed record ArenaLayout(long[] Offsets, long Bytes, long LowerBound, int PeakOp)
{
    /// <summary>Arena bytes over the lower bound (1 is optimal).</summary>
    public double Ratio => LowerBound == 0 ? 1 : (double)Bytes / LowerBound;
}

/// <summary>
/// Static arena planning: every buffer of a step gets one offset for the whole step, chosen from when it is live, so that
/// buffers live at the same op never share an address (interval packing, "greedy by size"): largest first (ties: the
/// longest-lived first), each at the lowest offset where it overlaps no already placed buffer that is live at any op it
/// is. A buffer may be live in several disjoint intervals (a workspace reused by every sub-layer); it keeps one address.
/// </summary>
internal static class ArenaPacking
{
    /// <summary>Every offset and size is a multiple of this (cuBLAS and the kernels' vector loads want 16; 256 keeps tensors on their own cache sectors).</summary>
    public const int Alignment = 256;

    /// <summary><paramref name="bytes"/> rounded up to <see cref="Alignment"/>.</summary>
    public static long Align(long bytes) => (bytes + Alignment - 1) / Alignment * Alignment;

    /// <summary>Places <paramref name="requests"/> in a schedule of <paramref name="opCount"/> ops.</summary>
    /// <exception cref="ArgumentException">A size is negative, or a lifetime lies outside the schedule or out of order.</exception>
    public static ArenaLayout Pack(IReadOnlyList<ArenaRequest> requests, int opCount)
    {
        ArgumentNullException.ThrowIfNull(requests);
        Validate(requests, opCount);
        var (lowerBound, peakOp) = PeakLiveBytes(requests, opCount);
        var offsets = new long[requests.Count];
        var sizes = requests.Select(r => r.Lifetimes.Count == 0 ? 0 : Align(r.Bytes)).ToArray();
        var spans = requests.Select(r => r.Lifetimes.Count == 0 ? default : new Lifetime(r.Lifetimes[0].First, r.Lifetimes[^1].Last)).ToArray();
        var liveOps = requests.Select(r => r.Lifetimes.Sum(l => (long)l.Last - l.First + 1)).ToArray();
        var order = Enumerable.Range(0, requests.Count).Where(i => sizes[i] > 0)
            .OrderByDescending(i => sizes[i]).ThenByDescending(i => liveOps[i]).ThenBy(i => i).ToArray();

        var placed = new List<int>(order.Length);
        var blocking = new List<(long Start, long End)>();
        long arena = 0;
        foreach (var i in order)
        {
            blocking.Clear();
            foreach (var j in placed)
                if (spans[i].Overlaps(spans[j]) && Conflict(requests[i].Lifetimes, requests[j].Lifetimes))
                    blocking.Add((offsets[j], offsets[j] + sizes[j]));
            blocking.Sort();
            long offset = 0;
            foreach (var (start, end) in blocking)
            {
                if (start - offset >= sizes[i]) break;
                offset = Math.Max(offset, end);
            }
            offsets[i] = offset;
            arena = Math.Max(arena, offset + sizes[i]);
            placed.Add(i);
        }
        return new ArenaLayout(offsets, arena, lowerBound, peakOp);
    }

    /// <summary>The most aligned bytes live at one op, and the first op where that happens (a sweep over the ops).</summary>
    public static (long Bytes, int Op) PeakLiveBytes(IReadOnlyList<ArenaRequest> requests, int opCount)
    {
        ArgumentNullException.ThrowIfNull(requests);
        var delta = new long[opCount + 1];
        foreach (var request in requests)
        {
            var size = Align(request.Bytes);
            foreach (var life in request.Lifetimes)
            {
                delta[life.First] += size;
                delta[life.Last + 1] -= size;
            }
        }
        long live = 0, peak = 0;
        var peakOp = 0;
        for (var op = 0; op < opCount; op++)
        {
            live += delta[op];
            if (live > peak) (peak, peakOp) = (live, op);
        }
        return (peak, peakOp);
    }

    /// <summary>True when two sorted interval lists share an op.</summary>
    internal static bool Conflict(IReadOnlyList<Lifetime> a, IReadOnlyList<Lifetime> b)
    {
        int i = 0, j = 0;
        while (i < a.Count && j < b.Count)
        {
            if (a[i].Overlaps(b[j])) return true;
            if (a[i].Last < b[j].Last) i++;
            else j++;
        }
        return false;
    }

    private static void Validate(IReadOnlyList<ArenaRequest> requests, int opCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(opCount);
        for (var i = 0; i < requests.Count; i++)
        {
            var r = requests[i];
            if (r.Bytes < 0) throw new ArgumentException($"Request {i} has {r.Bytes} bytes.", nameof(requests));
            var previous = -1;
            foreach (var life in r.Lifetimes)
            {
                if (life.First <= previous || life.Last < life.First || life.Last >= opCount)
                    throw new ArgumentException($"Request {i}: lifetime [{life.First}, {life.Last}] is out of order or outside ops 0..{opCount - 1}.", nameof(requests));
                previous = life.Last;
            }
        }
    }
}
