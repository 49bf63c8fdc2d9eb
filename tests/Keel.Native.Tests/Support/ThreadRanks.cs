namespace Keel.Native.Tests.Support;

/// <summary>
/// A rank group whose ranks are threads of this process, exchanging through shared arrays between barriers: lets the
/// agreement logic be tested with several ranks and no MPI. <see cref="Run"/> runs one body per rank and returns each
/// rank's result or exception.
/// </summary>
internal sealed class ThreadRanks : IRankGroup
{
    private readonly Shared _shared;

    private ThreadRanks(Shared shared, int rank)
    {
        _shared = shared;
        Rank = rank;
    }

    public int Rank { get; }

    public int Size => _shared.Slots.Length;

    /// <summary>Runs <paramref name="body"/> on <paramref name="size"/> ranks at once; each rank's exception is its result.</summary>
    public static Exception?[] Run(int size, Action<IRankGroup> body)
    {
        var shared = new Shared(size);
        var results = new Exception?[size];
        var threads = Enumerable.Range(0, size).Select(rank => new Thread(() =>
        {
            try
            {
                body(new ThreadRanks(shared, rank));
            }
            catch (Exception e)
            {
                results[rank] = e;
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        return results;
    }

    public void AllReduceSum(Span<double> values)
    {
        Exchange(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values), values.Length * sizeof(double));
        var sums = new double[values.Length];
        foreach (var slot in _shared.Slots)
            for (var i = 0; i < sums.Length; i++) sums[i] += BitConverter.ToDouble(slot, i * sizeof(double));
        Barrier();
        sums.CopyTo(values);
    }

    public void AllGather(ReadOnlySpan<byte> mine, Span<byte> all)
    {
        Exchange(mine, mine.Length);
        for (var r = 0; r < Size; r++) _shared.Slots[r].CopyTo(all[(r * mine.Length)..]);
        Barrier();
    }

    public void Broadcast(Span<byte> bytes, int root)
    {
        Exchange(bytes, bytes.Length);
        _shared.Slots[root].CopyTo(bytes);
        Barrier();
    }

    public void Barrier() => _shared.Barrier.SignalAndWait();

    private void Exchange(ReadOnlySpan<byte> mine, int length)
    {
        _shared.Slots[Rank] = mine[..length].ToArray();
        Barrier();
    }

    private sealed class Shared(int size)
    {
        public byte[][] Slots { get; } = new byte[size][];

        public Barrier Barrier { get; } = new(size);
    }
}
