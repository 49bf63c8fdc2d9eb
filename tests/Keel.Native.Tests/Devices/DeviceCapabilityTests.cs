namespace Keel.Native.Tests.Devices;

/// <summary>
/// What a device offers beyond the op set (kernel runtime and SM count, memory, graph capture, a profiler clock) is asked
/// of the device, never read off its type: a device that wraps another answers for it, and the trainer replays a step
/// graph on any device that can capture one. Checked on the CPU with a device that reports made-up capabilities; and the
/// profiled device times every op.
/// </summary>
public sealed class DeviceCapabilityTests
{
    [Fact]
    public void AProfiledDeviceAnswersForTheDeviceItWrapsButOffersNoGraphCapture()
    {
        var inner = new CapableDevice();
        using (var profiled = new ProfiledDevice(inner))
        {
            Assert.Same(inner.Runtime, profiled.Kernels);
            Assert.Same(profiled.KernelLaunches, inner.Runtime.Profiler);
            Assert.Equal(inner.QueryMemory(), profiled.QueryMemory());
            Assert.Equal(CapableDevice.TotalBytes, TrainingDevices.MemoryBytes(profiled));
            Assert.Equal(MemoryTarget.For(inner), MemoryTarget.For(profiled));
            Assert.Equal(CapableDevice.Multiprocessors, MemoryTarget.For(profiled).Multiprocessors);
            Assert.NotNull(inner.GraphCapture);
            Assert.Null(profiled.GraphCapture);
            profiled.Paused = true;
            Assert.Null(inner.Runtime.Profiler);
            profiled.Paused = false;
            Assert.Same(profiled.KernelLaunches, inner.Runtime.Profiler);
        }
        Assert.Null(inner.Runtime.Profiler);
        Assert.True(inner.Disposed);
    }

    [Fact]
    public void TheProfiledDeviceTimesEveryOpAndCountsGemmFlops()
    {
        using var device = new ProfiledDevice(new CpuDevice());
        var config = TinyModels.Config(Architecture.Keel);
        using var model = new KeelModel(device, config, ModelPrecision.Float32, batchSize: 2);
        model.Initialize(1);
        var (tokens, targets) = TinyModels.Batch(new Random(1), model.Tokens, config.VocabularySize);
        model.SetBatch(tokens, targets);
        model.ZeroGradients();
        model.Forward(lossGradientScale: 0.1f);
        model.Backward();
        var table = new StringWriter();
        device.Profile.Write(table, 1000);
        var text = table.ToString();
        foreach (var op in new[] { "gemm NT f32->f32", "attention forward", "attention backward", "residual_norm forward", "swiglu backward", "cross_entropy", "embedding backward" })
            Assert.Contains(op, text);
        // Two attention sub-layers, one forward each.
        Assert.Matches(@"attention forward\s+2\s", text);
    }

    [Fact]
    public void TheTrainerReplaysOneStepGraphWhereTheDeviceCapturesAndTrainsAsIfEveryOpWereLaunched()
    {
        var options = TrainingFixtures.TinyOptions with { Steps = 4, AccumulationSteps = 2 };
        var eager = Losses(new CapableDevice(), options with { CudaGraphs = false }, out var eagerUsedGraphs);
        Assert.False(eagerUsedGraphs);

        var device = new CapableDevice();
        var replayed = Losses(device, options, out var usedGraphs);
        Assert.True(usedGraphs);
        Assert.Equal(1, device.Graphs.Captures);
        Assert.Equal((options.Steps - 1) * options.AccumulationSteps, device.Graphs.Replays);
        Assert.Equal(eager, replayed);

        using var profiled = new ProfiledDevice(new CapableDevice());
        using var trainer = new Trainer(profiled, TrainingFixtures.TinyConfig, options, TrainingFixtures.CopyTask());
        Assert.False(trainer.UsesCudaGraphs);
    }

    private static double[] Losses(IDevice device, TrainingOptions options, out bool usedGraphs)
    {
        using (device)
        {
            using var trainer = new Trainer(device, TrainingFixtures.TinyConfig, options, TrainingFixtures.CopyTask());
            trainer.Initialize();
            usedGraphs = trainer.UsesCudaGraphs;
            var losses = Enumerable.Range(0, options.Steps).Select(_ => trainer.Step().Loss);
            return [.. losses, .. TrainingFixtures.Parameters(trainer.Model).Select(v => (double)v)];
        }
    }

    /// <summary>The CPU device, reporting a kernel runtime, device memory and a graph capture of its own.</summary>
    private sealed class CapableDevice : ForwardingDevice
    {
        public const long TotalBytes = 10L << 30;
        public const int Multiprocessors = 7;

        public FakeRuntime Runtime { get; } = new();
        public FakeGraphs Graphs { get; } = new();
        public bool Disposed { get; private set; }

        public override IKernelRuntime? Kernels => Runtime;
        public override DeviceMemoryInfo? QueryMemory() => new DeviceMemoryInfo(TotalBytes, 4L << 30);
        public override IGraphCapture? GraphCapture => Graphs;

        public override void Dispose()
        {
            Disposed = true;
            base.Dispose();
        }
    }

    private sealed class FakeRuntime : IKernelRuntime
    {
        public int MultiprocessorCount => CapableDevice.Multiprocessors;
        public int MaxSharedMemoryPerBlockOptInBytes => 227 << 10;
        public KernelProfiler? Profiler { get; set; }
        public KernelFunction Load(KernelSpec spec, string entryPoint) => throw new NotSupportedException("no kernels here");
    }

    /// <summary>A graph capture as the CUDA one behaves: nothing runs while it records; each replay runs the work once.</summary>
    private sealed class FakeGraphs : IGraphCapture
    {
        public int Captures { get; private set; }
        public int Replays { get; private set; }

        public IDeviceGraph Capture(Action work)
        {
            Captures++;
            return new Graph(this, work);
        }

        private sealed class Graph(FakeGraphs owner, Action work) : IDeviceGraph
        {
            public void Replay()
            {
                owner.Replays++;
                work();
            }

            public void Dispose()
            {
            }
        }
    }
}
