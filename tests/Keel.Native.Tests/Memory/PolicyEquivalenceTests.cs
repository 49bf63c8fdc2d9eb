namespace Keel.Native.Tests.Memory;

/// <summary>Every policy computes the losses and gradients of store-everything, bit for bit on the CPU device.</summary>
public sealed class PolicyEquivalenceTests
{
    public static TheoryData<string, Architecture, NormKind, FeedForwardKind> Policies()
    {
        var data = new TheoryData<string, Architecture, NormKind, FeedForwardKind>();
        foreach (var policy in new[] { "selective", "every:1", "every:3", "every:4", "binomial:2", "binomial:3" })
            data.Add(policy, Architecture.Keel, NormKind.Rms, FeedForwardKind.SwiGlu);
        data.Add("selective", Architecture.PostLN, NormKind.Layer, FeedForwardKind.Gelu);
        data.Add("every:3", Architecture.PreLN, NormKind.Layer, FeedForwardKind.SwiGlu);
        data.Add("binomial:2", Architecture.DeepNorm, NormKind.Rms, FeedForwardKind.Gelu);
        return data;
    }

    [Theory]
    [MemberData(nameof(Policies))]
    public void LossesAndGradientsEqualStoreEverythingBitForBit(string policy, Architecture architecture, NormKind norm, FeedForwardKind ffn)
    {
        var config = TinyModels.Config(architecture, norm, ffn) with { SubLayers = 10 };
        var (expectedLosses, expectedGradients) = Step(config, MemoryPolicy.Store);
        var (losses, gradients) = Step(config, MemoryPolicy.Parse(policy));
        Assert.Equal(expectedLosses, losses);
        Assert.Equal(expectedGradients, gradients);
    }

    [Fact]
    public void ThePoliciesReallyRecompute()
    {
        // Guards the test above: the schedules differ from store's, so equal results mean the recomputation is right.
        var inventory = new MemoryInventory(TinyModels.Config(Architecture.Keel) with { SubLayers = 10 }, ModelPrecision.Float32, 2, MemoryTarget.Cpu);
        Assert.Equal(10, MemoryPlanner.Plan(inventory, MemoryPolicy.Store).Schedule.SubLayerForwards);
        Assert.Equal(19, MemoryPlanner.Plan(inventory, MemoryPolicy.Every(1)).Schedule.SubLayerForwards);
        Assert.Equal(10 + (int)Revolve.MinimalAdvances(10, 2), MemoryPlanner.Plan(inventory, MemoryPolicy.Binomial(2)).Schedule.SubLayerForwards);
        var selective = MemoryPlanner.Plan(inventory, MemoryPolicy.Selective).Schedule;
        Assert.Equal(9, selective.Ops.Count(o => o.Kind == StepOpKind.FormInput));
        Assert.Equal(5, selective.Ops.Count(o => o.Kind == StepOpKind.RecomputeActivation));
    }

    private static (float[] Losses, float[] Gradients) Step(ModelConfig config, MemoryPolicy policy)
    {
        using var device = new CpuDevice();
        var plan = MemoryPlanner.Plan(new MemoryInventory(config, ModelPrecision.Float32, 2, MemoryTarget.Cpu), policy);
        using var model = new KeelModel(device, config, ModelPrecision.Float32, 2, plan);
        var rng = new Random(99);
        var (tokens, targets) = TinyModels.Batch(rng, model.Tokens, config.VocabularySize);
        model.SetBatch(tokens, targets);
        model.LoadParameters<double>(TinyModels.RandomParameters(model.Layout, rng));
        model.ZeroGradients();
        model.Forward(lossGradientScale: 1f / model.Tokens);
        model.Backward();
        var losses = new float[model.Tokens];
        device.CopyToHost<float>(model.Losses, losses);
        var gradients = new float[model.Layout.Length];
        model.ReadGradients<float>(gradients);
        Assert.All(losses, v => Assert.True(float.IsFinite(v)));
        return (losses, gradients);
    }
}
