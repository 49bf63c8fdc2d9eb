namespace Keel.Native.Tests.Memory;

public sealed class ArenaPackingTests
{
    [Fact]
    public void RandomLifetimesNeverShareAnAddressWhileBothAreLiveAndTheBoundMatchesABruteForceCount()
    {
        var rng = new Random(2024);
        for (var trial = 0; trial < 200; trial++)
        {
            var ops = rng.Next(1, 40);
            var requests = Enumerable.Range(0, rng.Next(1, 30)).Select(_ => RandomRequest(rng, ops)).ToArray();
            var layout = ArenaPacking.Pack(requests, ops);
            AssertNoOverlap(requests, layout);
            Assert.Equal(BruteForcePeak(requests, ops), layout.LowerBound);
            Assert.True(layout.Bytes >= layout.LowerBound);
            Assert.All(layout.Offsets, o => Assert.Equal(0, o % ArenaPacking.Alignment));
        }
    }

    [Fact]
    public void BuffersLiveAtDifferentTimesShareMemory()
    {
        ArenaRequest[] requests = [new(1000, [new(0, 1)]), new(1000, [new(2, 3)]), new(500, [new(1, 2)])];
        var layout = ArenaPacking.Pack(requests, 4);
        Assert.Equal(layout.Offsets[0], layout.Offsets[1]);
        Assert.Equal(1024 + 512, layout.Bytes);
        Assert.Equal(1024 + 512, layout.LowerBound);
    }

    [Fact]
    public void LifetimesOutOfOrderOrOutsideTheScheduleAreRejected()
    {
        Assert.Throws<ArgumentException>(() => ArenaPacking.Pack([new ArenaRequest(8, [new(2, 3), new(1, 1)])], 5));
        Assert.Throws<ArgumentException>(() => ArenaPacking.Pack([new ArenaRequest(8, [new(2, 5)])], 5));
        Assert.Throws<ArgumentException>(() => ArenaPacking.Pack([new ArenaRequest(-1, [new(0, 0)])], 5));
    }

    public static TheoryData<string> Policies() => ["store", "selective", "every:1", "every:3", "every:7", "binomial:1", "binomial:2", "binomial:4"];

    [Theory]
    [MemberData(nameof(Policies))]
    public void ModelPlansPackWithoutOverlapAndTheirPeakMatchesASimulationOfTheSchedule(string policy)
    {
        var config = TinyModels.Config(Keel.Native.Model.Architecture.Keel, Keel.Native.Reference.NormKind.Layer) with { SubLayers = 14 };
        var plan = MemoryPlanner.Plan(new MemoryInventory(config, ModelPrecision.Mixed, 3, MemoryTarget.Cuda), MemoryPolicy.Parse(policy));
        var schedule = plan.Schedule;
        var requests = schedule.Resources.Select(r => new ArenaRequest(r.Bytes, r.Lifetimes)).ToArray();
        AssertNoOverlap(requests, plan.Arena);
        Assert.Equal(SimulatedPeak(schedule), plan.Arena.LowerBound);
        Assert.True(plan.Arena.Bytes >= plan.Arena.LowerBound);
    }

    /// <summary>
    /// Walks the ops: a resource holds a value from the op that writes it (without reading it) to the last op that reads
    /// that value before the next such write; the batch is held throughout. Sums what is held at each op.
    /// </summary>
    private static long SimulatedPeak(StepSchedule schedule)
    {
        var ops = schedule.Ops;
        long peak = 0;
        for (var i = 0; i < ops.Count; i++)
        {
            long live = 0;
            foreach (var r in schedule.Resources)
            {
                var held = r.Role == ResourceRole.Batch;
                // The write whose value is current at op i, then whether anything at or after i reads that value.
                var write = -1;
                for (var j = 0; j <= i; j++)
                    if (ops[j].Writes.Contains(r.Id) && !ops[j].Reads.Contains(r.Id)) write = j;
                if (write >= 0)
                {
                    if (write == i) held = true;
                    for (var j = i; j < ops.Count && !held; j++)
                    {
                        if (j > i && ops[j].Writes.Contains(r.Id) && !ops[j].Reads.Contains(r.Id)) break;
                        if (ops[j].Reads.Contains(r.Id)) held = true;
                    }
                }
                if (held) live += ArenaPacking.Align(r.Bytes);
            }
            peak = Math.Max(peak, live);
        }
        return peak;
    }

    private static long BruteForcePeak(ArenaRequest[] requests, int ops)
    {
        long peak = 0;
        for (var op = 0; op < ops; op++)
            peak = Math.Max(peak, requests.Where(r => r.Lifetimes.Any(l => l.First <= op && op <= l.Last)).Sum(r => ArenaPacking.Align(r.Bytes)));
        return peak;
    }

    private static void AssertNoOverlap(ArenaRequest[] requests, ArenaLayout layout)
    {
        for (var i = 0; i < requests.Length; i++)
        {
            for (var j = i + 1; j < requests.Length; j++)
            {
                var together = requests[i].Lifetimes.Any(a => requests[j].Lifetimes.Any(a.Overlaps));
                if (!together || requests[i].Bytes == 0 || requests[j].Bytes == 0) continue;
                bool apart = layout.Offsets[i] + requests[i].Bytes <= layout.Offsets[j] || layout.Offsets[j] + requests[j].Bytes <= layout.Offsets[i];
                Assert.True(apart, $"requests {i} and {j} are live together and overlap in the arena");
            }
            if (requests[i].Lifetimes.Count > 0) Assert.True(layout.Offsets[i] + requests[i].Bytes <= layout.Bytes);
        }
    }

    private static ArenaRequest RandomRequest(Random rng, int ops)
    {
        var lifetimes = new List<Lifetime>();
        var at = rng.Next(-3, ops);
        while (at < ops && lifetimes.Count < 4)
        {
            if (at >= 0)
            {
                var last = Math.Min(ops - 1, at + rng.Next(0, 6));
                lifetimes.Add(new Lifetime(at, last));
                at = last;
            }
            at += rng.Next(2, 10);
        }
        return new ArenaRequest(rng.Next(0, 5) == 0 ? rng.Next(1, 300) : rng.Next(1, 5) * 4096L, lifetimes);
    }
}
