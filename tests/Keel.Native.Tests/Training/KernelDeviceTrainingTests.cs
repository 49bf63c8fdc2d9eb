using Keel.Native.Devices;
using Keel.Native.Devices.Cpu;
using Keel.Native.Model;
using Keel.Native.Tests.Cuda;
using Keel.Native.Tests.Support;
using Keel.Native.Training;

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
    public void Kernel_device_training_matches_cpu_losses_for_the_first_steps(DeviceKind kind)
    {
        var gpu = TestDevices.Get(kind);
        var config = TrainingFixtures.TinyConfig with { Hidden = 64, Heads = 4, KvHeads = 2, FeedForwardSize = 128, SequenceLength = 32 };
        var options = TrainingFixtures.TinyOptions with { Steps = 20, BatchSize = 8 };
        var data = TrainingFixtures.CopyTask();
        var cpuLosses = Losses(new CpuDevice(), config, options, data, ModelPrecision.Float32, dispose: true);
        var gpuLosses = Losses(gpu, config, options, data, ModelPrecision.Mixed, dispose: false);
        for (var i = 0; i < cpuLosses.Length; i++)
        {
            var error = Math.Abs(gpuLosses[i] - cpuLosses[i]) / cpuLosses[i];
            Assert.True(error < 2e-2, $"step {i + 1}: CPU loss {cpuLosses[i]:0.00000}, {kind} {gpuLosses[i]:0.00000} (relative difference {error:e2})");
        }
        Assert.True(gpuLosses[^1] < gpuLosses[0], $"the {kind} run did not lower the loss");
    }

    private static double[] Losses(IDevice device, ModelConfig config, TrainingOptions options, TokenDataset data, ModelPrecision precision, bool dispose)
    {
        try
        {
            using var trainer = new Trainer(device, config, options, data, TokenizerKind.Byte, precision);
            trainer.Initialize();
            return Enumerable.Range(0, 5).Select(_ => trainer.Step().Loss).ToArray();
        }
        finally
        {
            if (dispose) device.Dispose();
        }
    }
}
