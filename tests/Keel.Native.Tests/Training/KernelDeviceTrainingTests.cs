using Keel.Native.Tests.Cuda;

namespace Keel.Native.Tests.Training;

/// <summary>
/// Training on a kernel device (fp32 residual stream and master state, bf16 GEMM operands, the kernels of
/// kernels/) follows the CPU run (fp32 throughout) from the same seed: the first steps' losses agree within bf16
/// tolerance. Runs on the emulator always and on the GPU where there is one.
/// </summary>
[Collection(CudaDeviceCollection.Name)]
public sealed class KernelDeviceTrainingTests
{
    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void KernelDeviceTrainingMatchesCpuLossesForTheFirstSteps(DeviceKind kind)
    {
        var gpu = TestDevices.Get(kind);
        var config = TrainingFixtures.TinyConfig with { Hidden = 64, Heads = 4, KvHeads = 2, FeedForwardSize = 128, SequenceLength = 32 };
        var options = TrainingFixtures.TinyOptions with { Steps = 20, BatchSize = 8 };
        var data = TrainingFixtures.CopyTask();
        var cpuLosses = Losses(new CpuDevice(), config, options, data, ModelPrecision.Float32, dispose: true)[..5];
        var gpuLosses = Losses(gpu, config, options, data, ModelPrecision.Mixed, dispose: false)[..5];
        for (var i = 0; i < cpuLosses.Length; i++)
        {
            var error = Math.Abs(gpuLosses[i] - cpuLosses[i]) / cpuLosses[i];
            Assert.True(error < 2e-2, $"step {i + 1}: CPU loss {cpuLosses[i]:0.00000}, {kind} {gpuLosses[i]:0.00000} (relative difference {error:e2})");
        }
        Assert.True(gpuLosses[^1] < gpuLosses[0], $"the {kind} run did not lower the loss");
    }

    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void KernelDeviceTrainingUnderRecomputingPoliciesEqualsStoreEverything(DeviceKind kind)
    {
        // The kernels are deterministic and a recomputed tensor is the same kernel on the same inputs (a dropped z is
        // formed again by the residual-norm kernel from the kept x), so the runs agree bit for bit.
        var device = TestDevices.Get(kind);
        var config = TrainingFixtures.TinyConfig with { Hidden = 64, Heads = 4, KvHeads = 2, FeedForwardSize = 128, SequenceLength = 32, SubLayers = 6 };
        var data = TrainingFixtures.CopyTask();
        double[] Run(string policy) =>
            [.. Losses(device, config, TrainingFixtures.TinyOptions with { Steps = 3, BatchSize = 2, Memory = Keel.Native.Memory.MemoryPolicy.Parse(policy) }, data, ModelPrecision.Mixed, dispose: false, steps: 3)];
        var store = Run("store");
        foreach (var policy in new[] { "selective", "every:2", "binomial:2" })
            Assert.Equal(store, Run(policy));
    }

    [Fact]
    public void EmulatedTrainingIsBitwiseTheSameWhateverOrderBlocksAndThreadsRunIn()
    {
        // Every kernel of a step claims determinism (fixed-order reductions, dq summed in key-block order): under the
        // emulator's order check, which starts blocks, warps and lanes in a seeded random order, two seeds train alike bit
        // for bit. 160 tokens make three 64-key blocks per attention head (D = 16).
        var config = TrainingFixtures.TinyConfig with { Hidden = 64, Heads = 4, KvHeads = 2, FeedForwardSize = 128, SequenceLength = 160, SubLayers = 2 };
        var options = TrainingFixtures.TinyOptions with { Steps = 2, BatchSize = 2 };
        var data = TrainingFixtures.CopyTask();
        double[] Run(ulong seed)
        {
            var checks = EmulatorChecks.Order | EmulatorChecks.Spin;
            var device = TestDevices.OpenEmulated(new EmulatorOptions(WorkerThreads: 2) { Checks = checks, Seed = seed });
            return Losses(device, config, options, data, ModelPrecision.Mixed, dispose: true, steps: 2);
        }
        Assert.Equal(Run(1), Run(2));
    }

    [Fact]
    public void ReplayingCudaGraphsTrainsExactlyLikeLaunchingEveryOp()
    {
        var device = TestDevices.Get(DeviceKind.Cuda);
        var config = TrainingFixtures.TinyConfig with { Hidden = 64, Heads = 4, KvHeads = 2, FeedForwardSize = 128, SequenceLength = 32, SubLayers = 6 };
        var data = TrainingFixtures.CopyTask();
        var options = TrainingFixtures.TinyOptions with { Steps = 4, BatchSize = 2, AccumulationSteps = 2, Memory = Keel.Native.Memory.MemoryPolicy.Every(2) };
        using (var trainer = new Trainer(device, config, options, data, ModelPrecision.Mixed))
            Assert.True(trainer.UsesCudaGraphs);
        Assert.Equal(Losses(device, config, options with { CudaGraphs = false }, data, ModelPrecision.Mixed, dispose: false, steps: 4),
                     Losses(device, config, options, data, ModelPrecision.Mixed, dispose: false, steps: 4));
    }

    private static double[] Losses(IDevice device, ModelConfig config, TrainingOptions options, TokenDataset data, ModelPrecision precision, bool dispose, int steps = 5)
    {
        try
        {
            using var trainer = new Trainer(device, config, options, data, precision);
            trainer.Initialize();
            var losses = Enumerable.Range(0, steps).Select(_ => trainer.Step().Loss).ToArray();
            return [.. losses, .. TrainingFixtures.Parameters(trainer.Model).Select(v => (double)v)];
        }
        finally
        {
            if (dispose) device.Dispose();
        }
    }
}
