using Keel.Native.Devices.Cuda;
using Keel.Native.Tests.Cuda;

namespace Keel.Native.Tests.Training;

/// <summary>
/// The kernels' scratch is sized from the memory plan and reserved when the model is built, so a CUDA graph captured at
/// any step keeps valid addresses: training steps run with the workspace frozen as it is during a capture (any op that
/// wanted a larger buffer would throw), launch every kernel with the same addresses step after step, and allocate
/// nothing on the host. On a recording device (the real launchers, no kernels run) for every architecture and policy,
/// on the emulator with the kernels running, and on a GPU with a real capture where there is one.
/// </summary>
[Collection(CudaDeviceCollection.Name)]
public sealed class KernelScratchTests
{
    private static ModelConfig Config => TrainingFixtures.TinyConfig with { Hidden = 64, Heads = 4, KvHeads = 2, FeedForwardSize = 128, SequenceLength = 32, SubLayers = 6 };

    public static TheoryData<Architecture, NormKind, FeedForwardKind, string> Variants => new()
    {
        { Architecture.Keel, NormKind.Rms, FeedForwardKind.SwiGlu, "store" },
        { Architecture.Keel, NormKind.Layer, FeedForwardKind.Gelu, "every:2" },
        { Architecture.PreLN, NormKind.Layer, FeedForwardKind.SwiGlu, "selective" },
        { Architecture.PostLN, NormKind.Rms, FeedForwardKind.Gelu, "binomial:2" },
        { Architecture.DeepNorm, NormKind.Layer, FeedForwardKind.SwiGlu, "store" },
    };

    [Theory]
    [MemberData(nameof(Variants))]
    public void TrainingStepsRunWithTheScratchFrozenAfterTheModelIsBuilt(Architecture architecture, NormKind norm, FeedForwardKind feedForward, string policy)
    {
        using var device = new RecordingKernelDevice();
        var config = Config with { Architecture = architecture, Norm = norm, FeedForward = feedForward };
        var options = TrainingFixtures.TinyOptions with { BatchSize = 2, AccumulationSteps = 2, Memory = MemoryPolicy.Parse(policy) };
        using var trainer = new Trainer(device, config, options, TrainingFixtures.CopyTask());
        trainer.Initialize();

        // As in a capture: an op that needed more scratch than the plan reserved would throw here.
        device.Workspace.RunFrozen(() =>
        {
            for (var i = 0; i < 2; i++) trainer.Step();
        });
        Assert.True(device.Recorder.Count > 0);
        // And the plan's figures are what the device holds.
        var planned = trainer.Model.Plan.Inventory.Workspaces.Where(w => w.Scratch is not null).ToList();
        Assert.Equal(Enum.GetValues<KernelScratch>().Length, planned.Count);
        foreach (var workspace in planned) Assert.Equal(workspace.Bytes, device.Workspace.Bytes(workspace.Scratch!.Value));
    }

    [Fact]
    public void WithoutTheReservationAStepThatMustAllocateScratchFailsUnderAFreeze()
    {
        // The check above can fail: a model whose plan counted no kernel scratch (made for the CPU) reserves none.
        using var device = new RecordingKernelDevice();
        var inventory = new MemoryInventory(Config, ModelPrecision.Mixed, 2, MemoryTarget.Cpu);
        using var model = new KeelModel(device, Config, ModelPrecision.Mixed, 2, MemoryPlanner.Plan(inventory, MemoryPolicy.Store));
        model.Initialize(1);
        var error = Assert.Throws<InvalidOperationException>(() => device.Workspace.RunFrozen(() =>
        {
            model.Forward(withLoss: true, lossGradientScale: 1f);
            model.Backward();
        }));
        Assert.Contains("capture is running", error.Message);
        Assert.Contains("Reserve it first", error.Message);
    }

    [Fact]
    public void EveryStepLaunchesItsKernelsWithTheAddressesOfTheStepBefore()
    {
        using var device = new RecordingKernelDevice();
        using var trainer = new Trainer(device, Config, TrainingFixtures.TinyOptions with { BatchSize = 2 }, TrainingFixtures.CopyTask());
        trainer.Initialize();
        trainer.Step();
        List<string> Record()
        {
            device.Recorder.Launches.Clear();
            device.Recorder.Record = true;
            trainer.Step();
            device.Recorder.Record = false;
            return [.. device.Recorder.Launches.Select(launch => launch.ToString())];
        }
        var second = Record();
        Assert.Contains(second, launch => launch.StartsWith("keel_attention_backward(", StringComparison.Ordinal));
        Assert.Equal(second, Record());
    }

    [Fact]
    public void ATrainingStepThroughTheLaunchersAllocatesNothingOnTheHost()
    {
        using var device = new RecordingKernelDevice();
        using var trainer = new Trainer(device, Config, TrainingFixtures.TinyOptions with { BatchSize = 2, AccumulationSteps = 2 },
                                        TrainingFixtures.CopyTask());
        trainer.Initialize();
        for (var i = 0; i < 3; i++) trainer.Step();
        var launches = device.Recorder.Count;

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 3; i++) trainer.Step();
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.True(device.Recorder.Count > launches);
    }

    [Fact]
    public void OnTheEmulatorAModelTrainsWithItsScratchFrozenFromTheStart()
    {
        // A device of its own: the shared one's scratch may have grown in other tests.
        using var device = TestDevices.OpenEmulated(new EmulatorOptions());
        var options = TrainingFixtures.TinyOptions with { BatchSize = 2 };
        using var trainer = new Trainer(device, Config, options, TrainingFixtures.CopyTask());
        trainer.Initialize();
        var reserved = Enum.GetValues<KernelScratch>().Select(s => device.Workspace.Find(s).Address).ToArray();
        var losses = new List<double>();
        device.Workspace.RunFrozen(() =>
        {
            for (var i = 0; i < 3; i++) losses.Add(trainer.Step().Loss);
        });
        Assert.All(losses, loss => Assert.True(double.IsFinite(loss) && loss > 0, $"loss {loss}"));
        Assert.Equal(reserved, Enum.GetValues<KernelScratch>().Select(s => device.Workspace.Find(s).Address));
    }

    [Fact]
    public void ACapturedGraphKeepsTheScratchWhereItIsUntilItIsDisposed()
    {
        var device = (CudaDevice)TestDevices.Get(DeviceKind.Cuda);
        var options = TrainingFixtures.TinyOptions with { BatchSize = 2 };
        var trainer = new Trainer(device, Config, options, TrainingFixtures.CopyTask(), ModelPrecision.Mixed);
        try
        {
            Assert.True(trainer.UsesCudaGraphs);
            trainer.Initialize();
            var reserved = Enum.GetValues<KernelScratch>().Select(s => device.Workspace.Find(s).Address).ToArray();
            for (var i = 0; i < 3; i++) trainer.Step(); // the second step captures, the third replays
            Assert.Equal(reserved, Enum.GetValues<KernelScratch>().Select(s => device.Workspace.Find(s).Address));
            var held = device.Workspace.Bytes(KernelScratch.AttentionBackward);
            var error = Assert.Throws<InvalidOperationException>(() => device.ReserveScratch(KernelScratch.AttentionBackward, held + 1));
            Assert.Contains("a captured CUDA graph is open", error.Message);
        }
        finally
        {
            trainer.Dispose();
        }
        // The graph is gone: the scratch may grow again (after the queued work, which the device waits for).
        var before = device.Workspace.Bytes(KernelScratch.AttentionBackward);
        device.ReserveScratch(KernelScratch.AttentionBackward, before + 4);
        Assert.Equal(before + 4, device.Workspace.Bytes(KernelScratch.AttentionBackward));
    }
}
