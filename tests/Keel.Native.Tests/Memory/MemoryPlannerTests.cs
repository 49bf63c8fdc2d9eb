namespace Keel.Native.Tests.Memory;

public sealed class MemoryPlannerTests
{
    /// <summary>The paper's deepest model: 1024 sub-layers, hidden 1024, 16/8 heads, FFN 3072, sequence 4096 (GPT-2 vocabulary), one sequence per step.</summary>
    private static readonly ModelConfig Paper = new()
    {
        SubLayers = 1024, Hidden = 1024, Heads = 16, KvHeads = 8, FeedForwardSize = 3072, SequenceLength = 4096, VocabularySize = 50257,
    };

    [Fact]
    public void AutoNeverExceedsTheBudgetAndRecomputesLeastAmongEveryPolicyThatFits()
    {
        var inventory = new MemoryInventory(TinyModels.Config(Architecture.Keel) with { SubLayers = 16 }, ModelPrecision.Mixed, 2, MemoryTarget.Cpu);
        var all = new List<MemoryPolicy> { MemoryPolicy.Store, MemoryPolicy.Selective };
        for (var k = 1; k < 16; k++) all.Add(MemoryPolicy.Every(k));
        for (var s = 1; s <= 16; s++) all.Add(MemoryPolicy.Binomial(s));
        var plans = all.Select(p => MemoryPlanner.Plan(inventory, p)).ToList();
        long smallest = plans.Min(p => p.TotalBytes), largest = plans.Max(p => p.TotalBytes);
        Assert.Equal(MemoryPlanner.Smallest(inventory).TotalBytes, smallest);
        var rng = new Random(5);
        for (var trial = 0; trial < 40; trial++)
        {
            var budget = smallest + (long)(rng.NextDouble() * (largest - smallest + 1));
            var auto = MemoryPlanner.Auto(inventory, budget);
            Assert.True(auto.TotalBytes <= budget, $"{auto} exceeds {budget}");
            var least = plans.Where(p => p.Fits(budget)).Min(p => p.RecomputeFlops);
            Assert.Equal(least, auto.RecomputeFlops);
        }
    }

    [Fact]
    public void BelowTheSmallestPlanAutoSaysWhatBudgetWouldFit()
    {
        var inventory = new MemoryInventory(TinyModels.Config(Architecture.Keel) with { SubLayers = 8 }, ModelPrecision.Float32, 2, MemoryTarget.Cpu);
        var smallest = MemoryPlanner.Smallest(inventory);
        var e = Assert.Throws<MemoryBudgetException>(() => MemoryPlanner.Auto(inventory, smallest.TotalBytes - 1));
        Assert.Equal(smallest.TotalBytes, e.SmallestBudget);
        Assert.Contains("smallest budget that fits is " + ByteSize.Format(smallest.TotalBytes), e.Message);
        Assert.DoesNotContain("alone take", e.Message);
        Assert.Equal(smallest.Policy, MemoryPlanner.Auto(inventory, smallest.TotalBytes).Policy);
    }

    [Fact]
    public void ThePaperModelTrainsOnA141GBGPUAndAn80GBOneCannotHoldItsOptimizerState()
    {
        var inventory = new MemoryInventory(Paper, ModelPrecision.Mixed, 1, MemoryTarget.Cuda);
        var plan = MemoryPlanner.Auto(inventory, ByteSize.Parse("141GB"));
        Assert.Equal(MemoryPolicyKind.Every, plan.Policy.Kind);
        Assert.True(plan.TotalBytes <= 141_000_000_000);
        Assert.InRange(plan.RecomputeFraction, 0.01, 0.35);

        var e = Assert.Throws<MemoryBudgetException>(() => MemoryPlanner.Auto(inventory, ByteSize.Parse("80GiB")));
        Assert.Contains("Parameters, gradients and optimizer state alone take 116.93 GB", e.Message);
        Assert.InRange(e.SmallestBudget, inventory.StaticBytes, 141_000_000_000);
        var depth = MemoryPlanner.LargestDepth(Paper, ModelPrecision.Mixed, 1, MemoryTarget.Cuda, ByteSize.Parse("80GiB"));
        Assert.InRange(depth, 2, 1022);
        Assert.NotNull(MemoryPlanner.TryAuto(new MemoryInventory(Paper with { SubLayers = depth }, ModelPrecision.Mixed, 1, MemoryTarget.Cuda), ByteSize.Parse("80GiB")));
        Assert.Null(MemoryPlanner.TryAuto(new MemoryInventory(Paper with { SubLayers = depth + 2 }, ModelPrecision.Mixed, 1, MemoryTarget.Cuda), ByteSize.Parse("80GiB")));
    }

    [Fact]
    public void TheModelAllocatesExactlyThePlannedArenaAndStaticState()
    {
        var config = TinyModels.Config(Architecture.Keel) with { SubLayers = 6 };
        using var device = new CpuDevice();
        foreach (var policy in new[] { MemoryPolicy.Store, MemoryPolicy.Every(2), MemoryPolicy.Binomial(2) })
        {
            var plan = MemoryPlanner.Plan(new MemoryInventory(config, ModelPrecision.Float32, 2, MemoryTarget.Cpu), policy);
            using var model = new KeelModel(device, config, ModelPrecision.Float32, 2, plan);
            var inventory = plan.Inventory;
            Assert.Equal(inventory.ParameterBytes + inventory.GradientBytes + inventory.OperandCopyBytes + plan.Arena.Bytes, model.AllocatedBytes);
            Assert.Same(plan, model.Plan);
        }
    }

    [Fact]
    public void APlanForAnotherModelIsRejectedBeforeAnythingIsAllocated()
    {
        var config = TinyModels.Config(Architecture.Keel);
        var plan = MemoryPlanner.Plan(new MemoryInventory(config, ModelPrecision.Float32, 2, MemoryTarget.Cpu), MemoryPolicy.Store);
        using var device = new CpuDevice();
        Assert.Equal("plan", Assert.Throws<ArgumentException>(() => new KeelModel(device, config, ModelPrecision.Float32, 3, plan)).ParamName);
        Assert.Equal("plan", Assert.Throws<ArgumentException>(() => new KeelModel(device, config with { Hidden = 16 }, ModelPrecision.Float32, 2, plan)).ParamName);
    }

    [Fact]
    public void TheInventoryListsEveryTensorWithWhatItCostsToRecompute()
    {
        var config = Paper with { SubLayers = 6, SequenceLength = 256 };
        var inventory = new MemoryInventory(config, ModelPrecision.Mixed, 2, MemoryTarget.Cuda);
        var attention = inventory.Tensors(SubLayerKind.Attention);
        var ffn = inventory.Tensors(SubLayerKind.FeedForward);
        Assert.Equal(["q", "k", "v", "o", "lse", "f", "x_out", "z_out", "rstd_out", "rstd_in"], attention.Select(t => t.Spec.Name));
        Assert.Equal(["gate_up", "h", "f", "x_out", "z_out", "rstd_out", "rstd_in"], ffn.Select(t => t.Spec.Name));
        Assert.All(attention.Concat(ffn), t => Assert.True(t.Producer.Flops > 0 && t.Producer.Bytes > 0, t.Spec.Name));
        // GEMM FLOPs are 2·tokens per weight: the attention sub-layer's four matrices, the FFN's three.
        double tokens = 512, h = 1024;
        Assert.Equal(2 * tokens * (h * h + 2 * h * 512 + h * h), attention.Where(t => t.Producer.Class == ProducerClass.Gemm).Select(t => t.Producer).Distinct().Sum(p => p.Flops) - 6 * tokens * (1024 + 512));
        Assert.Equal(2 * tokens * 3 * h * 3072, ffn.Where(t => t.Producer.Class == ProducerClass.Gemm).Select(t => t.Producer).Distinct().Sum(p => p.Flops));
        Assert.Equal(inventory.Layout.Length * 4L, inventory.ParameterBytes);
        Assert.Equal(inventory.Layout.Length * 2L, inventory.OperandCopyBytes);
        Assert.Contains(inventory.Workspaces, w => w.Name == "cuBLAS workspace" && w.Bytes == 32L << 20);
        Assert.DoesNotContain(new MemoryInventory(config, ModelPrecision.Float32, 2, MemoryTarget.Cpu).Workspaces, w => w.Name == "cuBLAS workspace");
    }

    [Fact]
    public void TheInventoryCountsTheVocabularyMatricesAndLogitsAtTheirPaddedSize()
    {
        // GPT-2's 50257 is held as 50304 rows, so every byte figure equals that of a vocabulary of 50304; the parameter
        // count and the model FLOPs stay those of 50257.
        var config = Paper with { SubLayers = 2, SequenceLength = 256, TiedEmbeddings = false };
        var odd = new MemoryInventory(config, ModelPrecision.Mixed, 2, MemoryTarget.Cuda);
        var padded = new MemoryInventory(config with { VocabularySize = 50304 }, ModelPrecision.Mixed, 2, MemoryTarget.Cuda);
        Assert.Equal(padded.StaticBytes, odd.StaticBytes);
        Assert.Equal(padded.Layout.Length, odd.Layout.Length);
        Assert.Equal(2 * 47L * 1024, padded.Layout.ParameterCount - odd.Layout.ParameterCount);
        Assert.Equal(new Keel.Native.Devices.TensorShape(512, 50304), odd.StateSpecs.Single(s => s.Name == "logits").Shape);
        Assert.Equal(new Keel.Native.Devices.TensorShape(512, 50304), odd.ScratchSpecs.Single(s => s.Name == "d_logits").Shape);
        Assert.Equal(MemoryPlanner.Plan(padded, MemoryPolicy.Store).Arena.Bytes, MemoryPlanner.Plan(odd, MemoryPolicy.Store).Arena.Bytes);
        Assert.True(odd.StepFlops < padded.StepFlops);
    }

    [Theory]
    [InlineData("store", "store")]
    [InlineData(" Every:12 ", "every:12")]
    [InlineData("binomial:3", "binomial:3")]
    [InlineData("AUTO", "auto")]
    public void PoliciesReadAndWriteTheirTextForm(string text, string canonical) => Assert.Equal(canonical, MemoryPolicy.Parse(text).ToString());

    [Theory]
    [InlineData("every")]
    [InlineData("every:0")]
    [InlineData("binomial:-2")]
    [InlineData("store:3")]
    [InlineData("keep-it-all")]
    public void UnknownPoliciesAreRejectedNamingTheForms(string text) =>
        Assert.Contains("every:K", Assert.Throws<ArgumentException>(() => MemoryPolicy.Parse(text)).Message);

    [Theory]
    [InlineData("80GiB", 80L << 30)]
    [InlineData("141GB", 141_000_000_000L)]
    [InlineData("512 MiB", 512L << 20)]
    [InlineData("1.5tb", 1_500_000_000_000L)]
    [InlineData("4096", 4096L)]
    [InlineData("2G", 2L << 30)]
    public void SizesParseInDecimalAndBinaryUnits(string text, long bytes) => Assert.Equal(bytes, ByteSize.Parse(text));

    [Theory]
    [InlineData("")]
    [InlineData("lots")]
    [InlineData("-5GB")]
    [InlineData("GB")]
    public void BadSizesAreRejected(string text) => Assert.Throws<ArgumentException>(() => ByteSize.Parse(text));
}
