using Keel.Cuda.Driver;
using Keel.Native.Devices;
using Keel.Native.Kernels;
using Keel.Native.Kernels.Launchers;
using Keel.Native.Numerics;
using Keel.Native.Reference;

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
        var runtime = new RecordingRuntime();
        var views = new Views();
        const long n = 3_000_000_007;
        new CastKernels(runtime).Convert(views.Of(DType.Float32, n), views.Of(DType.BFloat16, n));
        var optimizer = new OptimizerKernels(runtime);
        optimizer.GradientNorm(views.Of(DType.Float32, n), 1f, views.Of(DType.Float32, OptimizerKernels.MaxPartials), views.Of(DType.Float32, 2));
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
        var runtime = new RecordingRuntime();
        var views = new Views();
        var attention = new AttentionKernels(runtime);
        foreach (var headDim in AttentionKernels.HeadDims)
        {
            var options = new AttentionOptions(Batch: 2, Sequence: 131_072, QueryHeads: 32, KvHeads: 8, HeadDim: headDim);
            var (q, k, v, o, lse, dO, dq, dk, dv) = Tensors(views, options);
            attention.Forward(options, q, k, v, o, lse);
            attention.Backward(options, q, k, v, o, lse, dO, dq, dk, dv, elements => views.Of(DType.Float32, elements));
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
            attention.Backward(tooLong, t.Q, t.K, t.V, t.O, t.Lse, t.DO, t.Dq, t.Dk, t.Dv, elements => views.Of(DType.Float32, elements)));
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
            var runtime = new RecordingRuntime { MaxSharedMemoryPerBlockOptInBytes = limit };
            var attention = new AttentionKernels(runtime);
            attention.Forward(options, t.Q, t.K, t.V, t.O, t.Lse);
            attention.Backward(options, t.Q, t.K, t.V, t.O, t.Lse, t.DO, t.Dq, t.Dk, t.Dv, elements => views.Of(DType.Float32, elements));
            runtime.AssertWithinLimits();
            Assert.Equal(forwardShared, runtime.Launches.Single(l => l.Name == "keel_attention_forward").Shape.SharedMemoryBytes);
            var backward = runtime.Launches.Single(l => l.Name == "keel_attention_backward").Shape;
            Assert.Equal(new Dim3(2 * 8, 4096 / keyBlock), backward.Grid);
            Assert.InRange(backward.SharedMemoryBytes, 48 << 10, limit);
            // The workspace the memory planner reserves covers whichever tiles a device gets.
            Assert.True(AttentionKernels.BackwardWorkspaceElements(options) >= WorkspaceAsked(runtime, options, t, views));
        }

        // A device whose blocks cannot hold the smallest tiles is refused by name before anything is launched.
        var small = new RecordingRuntime { MaxSharedMemoryPerBlockOptInBytes = 48 << 10 };
        var error = Assert.Throws<ArgumentException>(() => new AttentionKernels(small).Forward(options, t.Q, t.K, t.V, t.O, t.Lse));
        Assert.Contains("needs at least", error.Message);
        Assert.Contains("this device allows 49152", error.Message);
        Assert.Empty(small.Launches);
    }

    private static long WorkspaceAsked(RecordingRuntime runtime, AttentionOptions options,
        (Tensor Q, Tensor K, Tensor V, Tensor O, Tensor Lse, Tensor DO, Tensor Dq, Tensor Dk, Tensor Dv) t, Views views)
    {
        long asked = 0;
        new AttentionKernels(runtime).Backward(options, t.Q, t.K, t.V, t.O, t.Lse, t.DO, t.Dq, t.Dk, t.Dv, elements =>
        {
            asked = elements;
            return views.Of(DType.Float32, elements);
        });
        return asked;
    }

    [Fact]
    public void RowKernelsTakeMillionsOfRows()
    {
        var runtime = new RecordingRuntime();
        var views = new Views();
        using var host = new Keel.Native.Devices.Cpu.CpuDevice();
        const int rows = 1 << 22;
        foreach (var hidden in new[] { 128, 1024, ResidualNormKernels.MaxHidden })
        {
            var norm = new ResidualNormKernels(runtime, host);
            var options = new ResidualNormOptions(NormKind.Layer, 1024f, OutputNorm: true, InputNorm: true);
            Tensor Stream() => views.Of(DType.Float32, new TensorShape(rows, hidden));
            Tensor Operand() => views.Of(DType.BFloat16, new TensorShape(rows, hidden));
            NormWeights Weights() => new(views.Of(DType.Float32, hidden), views.Of(DType.Float32, hidden));
            var statistics = new NormStatistics(views.Of(DType.Float32, rows), views.Of(DType.Float32, rows), views.Of(DType.Float32, rows), views.Of(DType.Float32, rows));
            var (x, f, y, outNorm, inNorm) = (Stream(), Operand(), Stream(), Weights(), Weights());
            norm.Forward(options, x, f, outNorm, inNorm, y, Operand(), statistics);
            norm.Backward(options, x, f, y, outNorm, inNorm, statistics, Stream(), Operand(), Stream(), Operand(), Weights(), Weights());
            norm.Dispose();
        }
        new CrossEntropyKernels(runtime).Forward(views.Of(DType.Float32, new TensorShape(rows, 50_257)), views.Of(DType.Int32, rows),
                                                 views.Of(DType.Float32, rows), views.Of(DType.Float32, new TensorShape(rows, 50_257)), 1f / rows);
        var rope = new RopeKernels(runtime);
        var qk = views.Of(DType.BFloat16, new TensorShape(8, 131_072, 32, 128));
        rope.Rotate(qk, qk, views.Of(DType.Float32, RopeKernels.TableElements(131_072, 128)), inverse: false);
        runtime.AssertWithinLimits();
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
    }

    private sealed class RecordingRuntime : IKernelRuntime
    {
        public List<(string Name, LaunchShape Shape, int DynamicSharedLimit)> Launches { get; } = [];

        public int MultiprocessorCount => Multiprocessors;

        /// <summary>sm_90's by default.</summary>
        public int MaxSharedMemoryPerBlockOptInBytes { get; init; } = 227 << 10;

        public KernelProfiler? Profiler { get; set; }

        public KernelFunction Load(KernelSpec spec, string entryPoint)
        {
            Assert.Contains(entryPoint, KernelSources.EntryPoints(spec.File));
            return new Recorded(spec, entryPoint, this);
        }

        public void AssertWithinLimits()
        {
            Assert.NotEmpty(Launches);
            foreach (var (name, shape, limit) in Launches)
            {
                Assert.True(shape.SharedMemoryBytes <= limit, $"{name} asks for {shape.SharedMemoryBytes} bytes of dynamic shared memory; its limit is {limit}.");
                Assert.True(shape.Block.Count <= LaunchShape.MaxThreadsPerBlock && shape.Block.Count % 32 == 0, $"{name}: a block of {shape.Block.Count} threads.");
            }
        }

        private sealed unsafe class Recorded(KernelSpec spec, string name, RecordingRuntime runtime) : KernelFunction(spec, name, runtime)
        {
            private int _limit = 48 << 10;

            public override void AllowDynamicSharedMemory(int bytes)
            {
                base.AllowDynamicSharedMemory(bytes);
                Assert.InRange(bytes, 0, runtime.MaxSharedMemoryPerBlockOptInBytes);
                _limit = bytes;
            }

            protected override void LaunchCore(in LaunchShape shape, void** args) => runtime.Launches.Add((Name, shape, _limit));
        }
    }
}
