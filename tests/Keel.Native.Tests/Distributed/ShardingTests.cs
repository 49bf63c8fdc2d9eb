namespace Keel.Native.Tests.Distributed;

/// <summary>How the flat buffers split among ranks, where bucketed gradients live, and one rank's memory under each ZeRO stage.</summary>
public sealed class ShardingTests
{
    [Theory]
    [InlineData(1, 1000)]
    [InlineData(2, 1000)]
    [InlineData(3, 100_003)]
    [InlineData(8, 64)]
    public void ShardsAreEqualAlignedAndCoverThePaddedBuffer(int ranks, long length)
    {
        var sharding = new Sharding(ranks, 1);
        var padded = sharding.PaddedLength(length);
        Assert.InRange(padded - length, 0, ranks == 1 ? 0 : ranks * Sharding.Alignment - 1);
        long next = 0;
        for (var r = 0; r < ranks; r++)
        {
            var (start, shard) = sharding.Shard(r, length);
            Assert.Equal(next, start);
            Assert.Equal(0, start % (ranks == 1 ? 1 : Sharding.Alignment));
            Assert.Equal(sharding.ShardLength(length), shard);
            next = start + shard;
        }
        Assert.Equal(padded, next);
    }

    [Fact]
    public void StagesShardWhatTheySayAndBadArgumentsAreNamed()
    {
        Assert.False(Sharding.None.ShardsOptimizer);
        Assert.True(new Sharding(1, 2).ShardsGradients);
        Assert.True(new Sharding(2, 1).ShardsOptimizer);
        Assert.False(new Sharding(2, 1).ShardsGradients);
        Assert.Equal("ranks", Assert.Throws<ArgumentOutOfRangeException>(() => new Sharding(0, 0)).ParamName);
        Assert.Equal("stage", Assert.Throws<ArgumentOutOfRangeException>(() => new Sharding(2, 3)).ParamName);
        Assert.Equal("ZeroStage", Assert.Throws<ArgumentOutOfRangeException>(() => new TrainingOptions { ZeroStage = -1 }).ParamName);
    }

    [Theory]
    [InlineData(Architecture.Keel, true)]
    [InlineData(Architecture.PreLN, false)]
    [InlineData(Architecture.DeepNorm, true)]
    public void BucketsTileTheSubLayersAndMapEveryParameterToOnePlace(Architecture architecture, bool tied)
    {
        var config = TinyModels.Config(architecture) with { SubLayers = 6, TiedEmbeddings = tied };
        var layout = new ParameterLayout(config);
        var flat = new Sharding(3, 2).PaddedLength(layout.Length);
        var buckets = new GradientBuckets(layout, flat);
        for (var l = 0; l < config.SubLayers; l++) Assert.Equal(buckets.Start(l) + buckets.Range(l).Length, buckets.Start(l + 1));
        Assert.Equal(flat, buckets.Start(config.SubLayers) - buckets.Start(0) + buckets.Resident().Sum(r => r.Length));
        Assert.Equal(buckets.ResidentLength + 2 * buckets.SlotLength, buckets.StorageLength);

        // Every tensor maps into one part of the storage, and no two tensors that are live together share an element.
        using var device = new CpuDevice();
        using var resident = device.Allocate(DType.Float32, new TensorShape(buckets.ResidentLength));
        using var slots = device.Allocate(DType.Float32, new TensorShape(buckets.Slots * buckets.SlotLength));
        var seen = new Dictionary<ulong, string>();
        for (var i = 0; i < layout.Tensors.Count; i++)
        {
            var t = layout.Tensors[i];
            var view = buckets.View(resident, slots, t.Offset, t.Length);
            var inSlot = view.Address >= slots.Tensor.Address && view.Address < slots.Tensor.Address + (ulong)slots.Tensor.ByteLength;
            var subLayer = Enumerable.Range(0, config.SubLayers).FirstOrDefault(l => t.Offset >= buckets.Start(l) && t.Offset < buckets.Start(l + 1), -1);
            Assert.Equal(subLayer >= 0, inSlot);
            // Tensors of different sub-layers may share a slot (their backwards run apart); within one owner, never.
            var owner = inSlot ? $"slot of sub-layer {subLayer}" : "resident";
            for (long e = 0; e < t.Length; e += Math.Max(1, t.Length / 7))
            {
                var address = view.Address + (ulong)(e * 4);
                if (seen.TryGetValue(address, out var other)) Assert.NotEqual(owner, other);
                seen[address] = owner;
            }
        }
        Assert.Throws<ArgumentException>(() => buckets.View(resident, slots, buckets.Start(1) - 1, 2));
    }

    [Fact]
    public void OneRanksOptimizerStateAndGradientsShrinkByTheRanksAndTheModelAllocatesThePlan()
    {
        var config = TinyModels.Config(Architecture.Keel) with { SubLayers = 12 };
        const int Ranks = 4;
        MemoryInventory Inventory(int stage) => new(config, ModelPrecision.Float32, 2, MemoryTarget.Cpu, new Sharding(Ranks, stage));
        var (zero0, zero1, zero2) = (Inventory(0), Inventory(1), Inventory(2));
        var alone = new MemoryInventory(config, ModelPrecision.Float32, 2, MemoryTarget.Cpu).OptimizerStateBytes;
        Assert.InRange(zero0.OptimizerStateBytes, alone, alone + 2 * 4 * Ranks * Sharding.Alignment);
        Assert.Equal(zero0.OptimizerStateBytes - 8, Ranks * (zero1.OptimizerStateBytes - 8));
        Assert.Equal(zero1.OptimizerStateBytes, zero2.OptimizerStateBytes);
        Assert.Equal(zero0.GradientBytes, zero1.GradientBytes);
        Assert.Equal(zero0.GradientBytes / Ranks, zero1.GradientShardBytes);
        Assert.True(zero2.GradientBytes + zero2.GradientShardBytes < zero0.GradientBytes);
        Assert.True(zero2.StaticBytes < zero1.StaticBytes && zero1.StaticBytes < zero0.StaticBytes);

        using var device = new CpuDevice();
        foreach (var inventory in new[] { zero0, zero1, zero2 })
        {
            var plan = MemoryPlanner.Plan(inventory, MemoryPolicy.Store);
            using var model = new KeelModel(device, config, ModelPrecision.Float32, 2, plan);
            Assert.Equal(inventory.ParameterBytes + inventory.GradientBytes + inventory.OperandCopyBytes + plan.Arena.Bytes, model.AllocatedBytes);
            Assert.Equal(inventory.Buckets is null, !model.Gradients.IsEmpty);
            Assert.Equal(plan.StaticBytes, inventory.StaticBuffers.Sum(b => MemoryTarget.Cpu.Allocated(b.Bytes)));
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    public void ATrainerGivenOneRankOfCollectivesTrainsAsOneProcessDoes(int stage)
    {
        var options = TrainingFixtures.TinyOptions with { ZeroStage = stage, AccumulationSteps = 2 };
        using var device = new CpuDevice();
        using var alone = new Trainer(device, TrainingFixtures.TinyConfig, options, TrainingFixtures.CopyTask());
        using var collectives = new SingleRankCollectives(device);
        using var ranked = new Trainer(device, TrainingFixtures.TinyConfig, options, TrainingFixtures.CopyTask(), collectives: collectives);
        Assert.Equal(stage == 2, ranked.Model.GradientBuckets is not null);
        Assert.Equal(stage >= 1, ranked.Optimizer.IsSharded);
        alone.Initialize();
        ranked.Initialize();
        for (var step = 1; step <= 4; step++)
        {
            var (a, r) = (alone.Step(), ranked.Step());
            // The sharded optimizer takes its norm from the shards' squares, in fp64 from fp32 norms: the clip factor may
            // differ in its last bits, and the weights with it; the gradients themselves are the same sums.
            if (stage == 0) Assert.Equal(a.Loss, r.Loss);
            else Assert.True(Math.Abs(a.Loss - r.Loss) <= 1e-6 * a.Loss, $"step {step}: {r.Loss} sharded, {a.Loss} alone");
        }
        Assert.Equal(alone.EvaluateValidation(), ranked.EvaluateValidation(), 1e-6);
    }
}
