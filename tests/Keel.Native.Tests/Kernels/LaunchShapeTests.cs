using Keel.Native.Kernels.Launchers;

namespace Keel.Native.Tests.Kernels;

/// <summary>
/// The launchers' grids at the sizes of real runs, which no emulated test can afford: flat parameter buffers past 2^31
/// elements, sequences of 128k, millions of norm rows. A recording runtime takes the launches without running them,
/// so the tensors are views of addresses nothing backs. A launch shape the driver would refuse (a grid y or z above
/// 65535, a block count past 2^31) throws in <see cref="LaunchShape"/>; dynamic shared memory must stay within what the
/// launcher allowed (48 KiB without the opt-in).
/// </summary>
public sealed class LaunchShapeTests
{
    private const int Multiprocessors = 132;

    [Fact]
    public void ElementwiseAndOptimizerLaunchesCoverBuffersPast2To31Elements()
    {
        var runtime = new RecordingKernelRuntime(Multiprocessors);
        var views = new Views();
        const long n = 3_000_000_007;
        new CastKernels(runtime).Convert(views.Of(DType.Float32, n), views.Of(DType.BFloat16, n));
        var optimizer = new OptimizerKernels(runtime, views.Workspace());
        optimizer.GradientNorm(views.Of(DType.Float32, n), 1f, views.Of(DType.Float32, 2));
        optimizer.AdamW(new AdamWOptions(), 3, 1e-4f, views.Of(DType.Float32, n), views.Of(DType.Float32, n), views.Of(DType.Float32, n),
                        views.Of(DType.Float32, n), views.Of(DType.BFloat16, n), views.Of(DType.Float32, 2));
        var activations = new ActivationKernels(runtime);
        activations.GeluForward(views.Of(DType.BFloat16, n), views.Of(DType.BFloat16, n));
        activations.SwiGluForward(views.Of(DType.BFloat16, new TensorShape(1L << 20, 2 * 4096)), views.Of(DType.BFloat16, new TensorShape(1L << 20, 4096)));

        Assert.Equal(["keel_cast_f32_to_bf16", "keel_optimizer_sumsq_partial", "keel_optimizer_clip_factor", "keel_optimizer_adamw",
                      "keel_activations_gelu_forward", "keel_activations_swiglu_forward"], runtime.Launches.Select(l => l.Name));
        runtime.AssertWithinLimits();
    }

    [Fact]
    public void AttentionGridsAtLongSequencesAndTheirLimits()
    {
        var runtime = new RecordingKernelRuntime(Multiprocessors);
        var views = new Views();
        var attention = new AttentionKernels(runtime, views.Workspace());
        foreach (var headDim in AttentionKernels.HeadDims)
        {
            var options = new AttentionOptions(Batch: 2, Sequence: 131_072, QueryHeads: 32, KvHeads: 8, HeadDim: headDim);
            var (q, k, v, o, lse, dO, dq, dk, dv) = Tensors(views, options);
            attention.Forward(options, q, k, v, o, lse);
            attention.Backward(options, q, k, v, o, lse, dO, dq, dk, dv);
        }
        var forward = runtime.Launches.First(l => l.Name == "keel_attention_forward").Shape;
        Assert.Equal(new Dim3(131_072 / 128, 32, 2), forward.Grid);
        var backward = runtime.Launches.Last(l => l.Name == "keel_attention_backward").Shape; // head dim 128: 128-key blocks
        Assert.Equal(new Dim3(2 * 8, 131_072 / 128), backward.Grid);
        runtime.AssertWithinLimits();

        // Past the grid's y and z limits the launchers refuse the shape by name, before any work.
        var tooManyBatches = new AttentionOptions(Batch: 65_536, Sequence: 16, QueryHeads: 2, KvHeads: 2, HeadDim: 64);
        var t = Tensors(views, tooManyBatches);
        Assert.Throws<ArgumentException>("options", () => attention.Forward(tooManyBatches, t.Q, t.K, t.V, t.O, t.Lse));
        var tooLong = new AttentionOptions(Batch: 1, Sequence: 65_536 * 128 + 1, QueryHeads: 1, KvHeads: 1, HeadDim: 16);
        t = Tensors(views, tooLong);
        Assert.Throws<ArgumentException>("options", () =>
            attention.Backward(tooLong, t.Q, t.K, t.V, t.O, t.Lse, t.DO, t.Dq, t.Dk, t.Dv));
    }

    [Fact]
    public void AttentionTilesFollowTheDevicesSharedMemoryLimit()
    {
        // sm_86 and sm_89 allow a block 99 KiB: at D = 128 the launcher takes 32-key forward tiles and 64-key backward
        // blocks of 32-query steps, and every launch stays within the limit (AllowDynamicSharedMemory asserts it).
        var views = new Views();
        var options = new AttentionOptions(Batch: 2, Sequence: 4096, QueryHeads: 32, KvHeads: 8, HeadDim: 128, Causal: true);
        var t = Tensors(views, options);
        foreach (var (limit, keyBlock, forwardShared) in new[] { (99 << 10, 64, 69_632), (163 << 10, 128, 104_448), (227 << 10, 128, 104_448) })
        {
            var runtime = new RecordingKernelRuntime(Multiprocessors) { MaxSharedMemoryPerBlockOptInBytes = limit };
            var workspace = views.Workspace();
            var attention = new AttentionKernels(runtime, workspace);
            attention.Forward(options, t.Q, t.K, t.V, t.O, t.Lse);
            attention.Backward(options, t.Q, t.K, t.V, t.O, t.Lse, t.DO, t.Dq, t.Dk, t.Dv);
            runtime.AssertWithinLimits();
            Assert.Equal(forwardShared, runtime.Launches.Single(l => l.Name == "keel_attention_forward").Shape.SharedMemoryBytes);
            var backward = runtime.Launches.Single(l => l.Name == "keel_attention_backward").Shape;
            Assert.Equal(new Dim3(2 * 8, 4096 / keyBlock), backward.Grid);
            Assert.InRange(backward.SharedMemoryBytes, 48 << 10, limit);
            // What the memory planner reserves covers whichever tiles a device gets.
            Assert.InRange(workspace.Bytes(KernelScratch.AttentionBackward), 1, 4 * AttentionKernels.BackwardWorkspaceElements(options));
        }

        // A device whose blocks cannot hold the smallest tiles is refused by name before anything is launched.
        var small = new RecordingKernelRuntime(Multiprocessors) { MaxSharedMemoryPerBlockOptInBytes = 48 << 10 };
        var error = Assert.Throws<ArgumentException>(() => new AttentionKernels(small, views.Workspace()).Forward(options, t.Q, t.K, t.V, t.O, t.Lse));
        Assert.Contains("needs at least", error.Message);
        Assert.Contains("this device allows 49152", error.Message);
        Assert.Empty(small.Launches);
    }

    [Fact]
    public void RowKernelsTakeMillionsOfRows()
    {
        var runtime = new RecordingKernelRuntime(Multiprocessors);
        var views = new Views();
        const int rows = 1 << 22;
        foreach (var hidden in new[] { 128, 1024, ResidualNormKernels.MaxHidden })
        {
            var norm = new ResidualNormKernels(runtime, views.Workspace());
            var options = new ResidualNormOptions(NormKind.Layer, 1024f, OutputNorm: true, InputNorm: true);
            Tensor Stream() => views.Of(DType.Float32, new TensorShape(rows, hidden));
            Tensor Operand() => views.Of(DType.BFloat16, new TensorShape(rows, hidden));
            NormWeights Weights() => new(views.Of(DType.Float32, hidden), views.Of(DType.Float32, hidden));
            var statistics = new NormStatistics(views.Of(DType.Float32, rows), views.Of(DType.Float32, rows), views.Of(DType.Float32, rows), views.Of(DType.Float32, rows));
            var (x, f, y, outNorm, inNorm) = (Stream(), Operand(), Stream(), Weights(), Weights());
            norm.Forward(options, x, f, outNorm, inNorm, y, Operand(), statistics);
            norm.Backward(options, x, f, y, outNorm, inNorm, statistics, Stream(), Operand(), Stream(), Operand(), Weights(), Weights());
        }
        new CrossEntropyKernels(runtime).Forward(views.Of(DType.Float32, new TensorShape(rows, 50_304)), 50_257, views.Of(DType.Int32, rows),
                                                 views.Of(DType.Float32, rows), views.Of(DType.Float32, new TensorShape(rows, 50_304)), 1f / rows);
        var rope = new RopeKernels(runtime, views.Workspace());
        var qk = views.Of(DType.BFloat16, new TensorShape(8, 131_072, 32, 128));
        rope.Rotate(qk, qk, 10_000f, inverse: false);
        runtime.AssertWithinLimits();
    }

    [Fact]
    public void ResidualNormLaunchesReportTheFlopsTheKernelHeaderCounts()
    {
        // kernels/residual_norm.cu: per element, forward 2 + 4 per RMSNorm or 8 per LayerNorm; backward 1 + N_in's 10 or 14
        // + N_out's 12 or 16 (+ 1 for dz without N_in). Keel's general sub-layer: 10 forward, 23 backward.
        Assert.Contains("Keel's general sub-layer (RMSNorm, both norms): 10 forward, 23 backward", KernelSources.Read("residual_norm.cu"));
        const int rows = 64, hidden = 128;
        foreach (var (kind, outputNorm, inputNorm, forward, backward) in new[]
        {
            (NormKind.Rms, true, true, 10, 23), (NormKind.Layer, true, true, 18, 31),
            (NormKind.Rms, false, true, 6, 11), (NormKind.Layer, true, false, 10, 18), (NormKind.Rms, false, false, 2, 2),
        })
        {
            var runtime = new RecordingKernelRuntime(Multiprocessors) { Profiler = new CostRecorder() };
            var views = new Views();
            var norm = new ResidualNormKernels(runtime, views.Workspace());
            var options = new ResidualNormOptions(kind, 4f, outputNorm, inputNorm);
            Tensor Stream() => views.Of(DType.Float32, new TensorShape(rows, hidden));
            Tensor Operand() => views.Of(DType.BFloat16, new TensorShape(rows, hidden));
            Tensor Vector(bool present, int length) => present ? views.Of(DType.Float32, length) : default;
            NormWeights Weights(bool present) => new(Vector(present, hidden), Vector(present && kind == NormKind.Layer, hidden));
            var statistics = new NormStatistics(Vector(outputNorm && kind == NormKind.Layer, rows), Vector(outputNorm, rows),
                                                Vector(inputNorm && kind == NormKind.Layer, rows), Vector(inputNorm, rows));
            var (x, f, y, outNorm, inNorm) = (Stream(), Operand(), Stream(), Weights(outputNorm), Weights(inputNorm));
            norm.Forward(options, x, f, outNorm, inNorm, y, Operand(), statistics);
            norm.Backward(options, x, f, y, outNorm, inNorm, statistics, Stream(), Operand(), Stream(), Operand(), Weights(outputNorm), Weights(inputNorm));
            var costs = ((CostRecorder)runtime.Profiler).Costs;
            Assert.Equal(((double)rows * hidden * forward), costs.Single(c => c.Name == "keel_residual_norm_forward").Cost.Flops);
            Assert.Equal(((double)rows * hidden * backward), costs.Single(c => c.Name == "keel_residual_norm_backward").Cost.Flops);
        }
    }

    /// <summary>Keeps each launch's cost instead of timing it.</summary>
    private sealed class CostRecorder : KernelProfiler
    {
        public List<(string Name, KernelCost Cost)> Costs { get; } = [];

        public override int Begin() => 0;

        public override void End(int token, string name, in KernelCost cost) => Costs.Add((name, cost));

        public override void Flush()
        {
        }
    }

    private static (Tensor Q, Tensor K, Tensor V, Tensor O, Tensor Lse, Tensor DO, Tensor Dq, Tensor Dk, Tensor Dv) Tensors(Views views, AttentionOptions o)
    {
        Tensor Query() => views.Of(DType.BFloat16, new TensorShape(o.Batch, o.Sequence, o.QueryHeads, o.HeadDim));
        Tensor KeyValue() => views.Of(DType.BFloat16, new TensorShape(o.Batch, o.Sequence, o.KvHeads, o.HeadDim));
        return (Query(), KeyValue(), KeyValue(), Query(), views.Of(DType.Float32, new TensorShape(o.Batch, o.QueryHeads, o.Sequence)),
                Query(), Query(), KeyValue(), KeyValue());
    }

    /// <summary>Disjoint, 256-byte aligned views of memory that does not exist (nothing is launched).</summary>
    private sealed class Views
    {
        private ulong _next = 1UL << 40;

        public Tensor Of(DType dtype, long elements) => Of(dtype, new TensorShape(elements));

        public Tensor Of(DType dtype, TensorShape shape)
        {
            var tensor = new Tensor(_next, dtype, shape);
            _next += ((ulong)tensor.ByteLength + 255) / 256 * 256 + 256;
            return tensor;
        }

        /// <summary>A launcher workspace whose buffers are views like these.</summary>
        public KernelWorkspace Workspace() => new(Buffer, _ => { }, () => { });

        private DeviceBuffer Buffer(long bytes)
        {
            var shape = new TensorShape((bytes + 3) / 4);
            return new DeviceBuffer(TestDevices.Reference, new Unbacked(Of(DType.Int32, shape)), DType.Int32, shape);
        }

        private sealed class Unbacked(Tensor view) : DeviceAllocation(view.Address, view.ByteLength)
        {
            protected override void Release()
            {
            }
        }
    }
}
