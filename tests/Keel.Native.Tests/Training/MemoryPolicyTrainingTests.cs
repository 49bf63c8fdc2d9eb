namespace Keel.Native.Tests.Training;

/// <summary>The trainer runs the memory plan its options ask for.</summary>
public sealed class MemoryPolicyTrainingTests
{
    [Fact]
    public void A1024SubLayerModelTrainsUnderAutoWithinASmallBudget()
    {
        var config = new ModelConfig { SubLayers = 1024, Hidden = 8, Heads = 2, KvHeads = 1, FeedForwardSize = 16, SequenceLength = 8 };
        var inventory = new MemoryInventory(config, ModelPrecision.Float32, 1, MemoryTarget.Cpu);
        var store = MemoryPlanner.Plan(inventory, MemoryPolicy.Store);
        // Half of what keeping everything takes: auto must recompute.
        var budget = inventory.StaticBytes + store.ArenaBytes / 2;
        var options = TrainingFixtures.TinyOptions with { Steps = 2, BatchSize = 1, Memory = MemoryPolicy.Auto, MemoryBudget = budget };
        using var device = new CpuDevice();
        using var trainer = new Trainer(device, config, options, TrainingFixtures.CopyTask());
        var plan = trainer.Model.Plan;
        Assert.NotEqual(MemoryPolicyKind.Store, plan.Policy.Kind);
        Assert.True(plan.TotalBytes <= budget);
        Assert.True(plan.Schedule.SubLayerForwards > config.SubLayers);
        trainer.Initialize();
        var first = trainer.Step();
        var second = trainer.Step();
        Assert.True(double.IsFinite(first.Loss) && double.IsFinite(second.Loss));
        Assert.False(first.Skipped || second.Skipped);
        Assert.NotEqual(first.Loss, second.Loss);
    }

    [Fact]
    public void TrainingUnderEachPolicyFollowsStoreEverythingBitForBit()
    {
        var config = TrainingFixtures.TinyConfig with { SubLayers = 8 };
        var expected = Losses(config, MemoryPolicy.Store);
        foreach (var policy in new[] { MemoryPolicy.Selective, MemoryPolicy.Every(3), MemoryPolicy.Binomial(2) })
            Assert.Equal(expected, Losses(config, policy));
    }

    [Fact]
    public void APolicyThatDoesNotFitTheBudgetIsRefusedWithWhatWould()
    {
        var config = TrainingFixtures.TinyConfig with { SubLayers = 8 };
        var store = MemoryPlanner.Plan(new MemoryInventory(config, ModelPrecision.Float32, 4, MemoryTarget.Cpu), MemoryPolicy.Store);
        var options = TrainingFixtures.TinyOptions with { MemoryBudget = store.TotalBytes - 1 };
        using var device = new CpuDevice();
        var e = Assert.Throws<MemoryBudgetException>(() => new Trainer(device, config, options, TrainingFixtures.CopyTask()));
        Assert.Contains("The store memory policy needs", e.Message);
        Assert.Contains("auto would choose", e.Message);
    }

    [Fact]
    public void TheMemoryOptionsSurviveACheckpoint()
    {
        var options = TrainingFixtures.TinyOptions with { Memory = MemoryPolicy.Every(3), MemoryBudget = 123456789, CudaGraphs = false };
        var json = System.Text.Json.JsonSerializer.Serialize(options, ModelConfig.JsonOptions);
        Assert.Contains("\"every:3\"", json);
        Assert.Equal(options, System.Text.Json.JsonSerializer.Deserialize<TrainingOptions>(json, ModelConfig.JsonOptions));
    }

    private static double[] Losses(ModelConfig config, MemoryPolicy policy)
    {
        using var device = new CpuDevice();
        using var trainer = new Trainer(device, config, TrainingFixtures.TinyOptions with { Steps = 3, Memory = policy }, TrainingFixtures.CopyTask());
        trainer.Initialize();
        return [.. Enumerable.Range(0, 3).Select(_ => trainer.Step().Loss), .. TrainingFixtures.Parameters(trainer.Model).Select(v => (double)v)];
    }
}
