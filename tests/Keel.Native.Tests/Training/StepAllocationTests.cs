namespace Keel.Native.Tests.Training;

/// <summary>
/// A training step allocates nothing on the host: the trainer, the model's plan, the sub-layers and the optimizer
/// run on buffers made once. The device here computes nothing (the CPU device's own pools are not the subject), so
/// any allocation counted comes from the step's own code.
/// </summary>
public sealed class StepAllocationTests
{
    [Theory]
    [InlineData("store", 1)]
    [InlineData("selective", 2)]
    [InlineData("every:2", 1)]
    [InlineData("binomial:2", 2)]
    public void ATrainingStepAllocatesNothingOnTheHost(string policy, int accumulation)
    {
        using var device = new NoComputeDevice();
        var options = TrainingFixtures.TinyOptions with { Memory = MemoryPolicy.Parse(policy), AccumulationSteps = accumulation, Steps = 50 };
        using var trainer = new Trainer(device, TrainingFixtures.TinyConfig with { SubLayers = 6 }, options, TrainingFixtures.CopyTask());
        trainer.Initialize();
        for (var i = 0; i < 3; i++) trainer.Step();

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 5; i++) Assert.False(trainer.Step().Skipped);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    public void ADataParallelStepAllocatesNothingOnTheHostAtAnyZeroStage(int stage)
    {
        using var device = new NoComputeDevice();
        using var collectives = new SingleRankCollectives(device);
        var options = TrainingFixtures.TinyOptions with { ZeroStage = stage, AccumulationSteps = 2, Steps = 50 };
        using var trainer = new Trainer(device, TrainingFixtures.TinyConfig with { SubLayers = 6 }, options, TrainingFixtures.CopyTask(), collectives: collectives);
        trainer.Initialize();
        for (var i = 0; i < 3; i++) trainer.Step();

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 5; i++) Assert.False(trainer.Step().Skipped);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    /// <summary>Memory and copies as the CPU device does them; every op a no-op, the losses and the gradient norm zero.</summary>
    private sealed class NoComputeDevice : ForwardingDevice
    {
        public override void Convert(Tensor source, Tensor destination) { }
        public override void Gemm(Tensor a, bool transposeA, Tensor b, bool transposeB, Tensor c, float alpha = 1f, float beta = 0f) { }
        public override void ResidualNormForward(ResidualNormOptions options, Tensor x, Tensor f, NormWeights outNorm, NormWeights inNorm, Tensor y, Tensor z, NormStatistics statistics) { }

        public override void ResidualNormBackward(ResidualNormOptions options, Tensor x, Tensor f, Tensor y, NormWeights outNorm, NormWeights inNorm, NormStatistics statistics,
                                                  Tensor dy, Tensor dz, Tensor dx, Tensor df, NormWeights outNormGradients, NormWeights inNormGradients) { }

        public override void RopeForward(Tensor x, Tensor output, float theta = Rope.DefaultTheta) { }
        public override void RopeBackward(Tensor dOutput, Tensor dx, float theta = Rope.DefaultTheta) { }
        public override void AttentionForward(AttentionOptions options, Tensor q, Tensor k, Tensor v, Tensor output, Tensor logSumExp) { }
        public override void AttentionBackward(AttentionOptions options, Tensor q, Tensor k, Tensor v, Tensor output, Tensor logSumExp, Tensor dOutput, Tensor dq, Tensor dk, Tensor dv) { }
        public override void SwiGluForward(Tensor gateUp, Tensor h) { }
        public override void SwiGluBackward(Tensor gateUp, Tensor dh, Tensor dGateUp) { }
        public override void GeluForward(Tensor x, Tensor y) { }
        public override void GeluBackward(Tensor x, Tensor dy, Tensor dx) { }
        public override void EmbeddingForward(Tensor tokens, Tensor table, Tensor output) { }
        public override void EmbeddingBackward(Tensor tokens, Tensor dOutput, Tensor dTable) { }
        public override void CrossEntropy(Tensor logits, int vocabulary, Tensor targets, Tensor losses, Tensor dLogits, float lossScale) => Clear(losses);
        public override void GradientNorm(Tensor gradients, float maxNorm, Tensor result) => Clear(result);
        public override void AdamW(AdamWOptions options, int step, float learningRate, Tensor parameters, Tensor gradients, Tensor firstMoment, Tensor secondMoment, Tensor parametersBf16, Tensor clip) { }
    }
}
