using Keel.Native.Distributed;
using Keel.Native.Kernels;
using Keel.Native.Kernels.Launchers;
using Keel.Native.Model;
using Keel.Native.Numerics;
using Keel.Native.Reference;

namespace Keel.Native.Memory;

/// <summary>What kind of work produces a tensor: what a selective policy keeps (GEMMs, attention) or recomputes (the rest).</summary>
internal enum ProducerClass
{
    /// <summary>A matrix product (cuBLAS), possibly followed by RoPE in place.</summary>
    Gemm,

    /// <summary>The attention kernel.</summary>
    Attention,

    /// <summary>The fused residual norm (or a standalone norm).</summary>
    Norm,

    /// <summary>An elementwise activation (SwiGLU, GELU).</summary>
    Activation,
}

/// <summary>
/// One op of a sub-layer's forward with what it costs to run again: FLOPs as docs/measuring.md counts them (a GEMM 2·m·n·k, causal
/// attention 2·B·S²·D·heads as FlashAttention counts it, elementwise work one FLOP per arithmetic step, exp and division
/// included), and the bytes it must read and write.
/// </summary>
/// <param name="Name">What it computes.</param>
/// <param name="Class">GEMM, attention, norm or activation.</param>
/// <param name="Flops">FLOPs to run it once.</param>
/// <param name="Bytes">Bytes it reads and writes once.</param>
internal sealed record ForwardOp(string Name, ProducerClass Class, double Flops, long Bytes);

/// <summary>One tensor a sub-layer's forward produces, and the op that produces it (its recompute cost, given that op's inputs).</summary>
/// <param name="Spec">Name, shape, element type, and whether a backward pass reads it.</param>
/// <param name="Producer">The op that writes it.</param>
internal sealed record InventoryTensor(ActivationSpec Spec, ForwardOp Producer)
{
    /// <summary>Its size.</summary>
    public long Bytes => Spec.ByteLength;
}

/// <summary>Device memory a step uses outside the activations, parameters and optimizer state: GEMM workspace and the kernel launchers' scratch.</summary>
/// <param name="Name">What it is.</param>
/// <param name="Bytes">Its size.</param>
/// <param name="Scratch">
/// The kernel scratch buffer it is, which a model reserves on its device before its first step
/// (<see cref="Devices.IDevice.ReserveScratch"/>); null for the GEMM library's workspace, which the device allocates itself.
/// </param>
public sealed record Workspace(string Name, long Bytes, KernelScratch? Scratch = null);

/// <summary>One allocation of a step's static state (parameters, gradients, optimizer state, operand copy), as the model or the optimizer makes it.</summary>
/// <param name="Name">What it holds.</param>
/// <param name="Bytes">Its size.</param>
public sealed record StaticBuffer(string Name, long Bytes);

/// <summary>
/// Everything one training step of a model keeps in device memory, tensor by tensor: for each sub-layer every tensor its
/// forward produces (shape, element type, whether the backward needs it, the FLOPs and bytes to recompute it), the model's
/// own state and scratch, the parameters, gradients and optimizer state, and the workspaces of the GEMM library and the
/// kernels. The planner sizes the arena from these very specs (the ones the model allocates from), so a plan's figures are
/// what the model will allocate.
/// <para>
/// In a data-parallel run the inventory is one rank's: <see cref="BatchSize"/> is the rank's share of the global batch,
/// and the <see cref="Sharding"/> decides which of the static buffers are whole and which are the rank's shard (see
/// <see cref="StaticBuffers"/>).
/// </para>
/// </summary>
public sealed class MemoryInventory
{
    private readonly Dictionary<(SubLayerKind, ResidualNormOptions), IReadOnlyList<InventoryTensor>> _tensors = [];
    private readonly Dictionary<IReadOnlyList<InventoryTensor>, double> _forwardFlops = new(ReferenceEqualityComparer.Instance);
    private readonly IReadOnlyList<InventoryTensor>?[] _bySubLayer;
    private double? _chainForwardFlops;

    /// <summary>
    /// Takes stock of <paramref name="config"/> (validated) at <paramref name="precision"/> for batches of
    /// <paramref name="batchSize"/> sequences on <paramref name="target"/>, as one rank of <paramref name="sharding"/>
    /// (default: one process).
    /// </summary>
    public MemoryInventory(ModelConfig config, ModelPrecision precision, int batchSize, MemoryTarget target, Sharding? sharding = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(precision);
        ArgumentNullException.ThrowIfNull(target);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        Layout = new ParameterLayout(config.Validate());
        Config = config;
        _bySubLayer = new IReadOnlyList<InventoryTensor>?[config.SubLayers];
        Precision = precision;
        BatchSize = batchSize;
        Target = target;
        Sharding = sharding ?? Sharding.None;
        var master = precision.Master.SizeOf();
        FlatLength = Sharding.PaddedLength(Layout.Length);
        var shard = Sharding.ShardsOptimizer ? Sharding.ShardLength(Layout.Length) : FlatLength;
        Buckets = Sharding.ShardsGradients ? new GradientBuckets(Layout, FlatLength) : null;
        var buffers = new List<StaticBuffer> { new("parameters", FlatLength * master) };
        if (Buckets is { } b)
        {
            buffers.Add(new("resident gradients", b.ResidentLength * master));
            buffers.Add(new("gradient bucket slots", b.Slots * b.SlotLength * master));
        }
        else
        {
            buffers.Add(new("gradients", FlatLength * master));
        }
        if (Sharding.ShardsOptimizer) buffers.Add(new("gradient shard", shard * master));
        buffers.Add(new("first moment", shard * master));
        buffers.Add(new("second moment", shard * master));
        buffers.Add(new("gradient norm and clip factor", 2 * sizeof(float)));
        OperandCopyBytes = precision.HasOperandCopy ? Layout.Length * precision.Operand.SizeOf() : 0;
        if (OperandCopyBytes > 0) buffers.Add(new("operand copy", OperandCopyBytes));
        StaticBuffers = buffers;
        ParameterBytes = FlatLength * master;
        GradientBytes = (Buckets?.StorageLength ?? FlatLength) * master;
        GradientShardBytes = Sharding.ShardsOptimizer ? shard * master : 0;
        OptimizerStateBytes = 2 * shard * master + 2 * sizeof(float);
        StateSpecs = KeelModel.StateSpecs(Layout, precision, batchSize);
        ScratchSpecs = KeelModel.ScratchSpecs(config, precision, batchSize);
        Workspaces = WorkspacesOf(Layout, batchSize, target);
        // The residual-norm kernel with N_in alone (and no f), as KeelModel.FormInput runs it.
        InputNormFlops = ResidualNormKernels.ForwardFlops(new ResidualNormOptions(config.Norm, 1f, OutputNorm: false, InputNorm: true), Tokens, config.Hidden);
        StepFlops = KeelModel.TrainingFlopsPerToken(config) * Tokens;
    }

    /// <summary>The model.</summary>
    public ModelConfig Config { get; }

    /// <summary>The element types.</summary>
    public ModelPrecision Precision { get; }

    /// <summary>Sequences per forward pass.</summary>
    public int BatchSize { get; }

    /// <summary>Tokens per forward pass.</summary>
    public long Tokens => (long)BatchSize * Config.SequenceLength;

    /// <summary>The device kind.</summary>
    public MemoryTarget Target { get; }

    /// <summary>The parameter layout.</summary>
    public ParameterLayout Layout { get; }

    /// <summary>How the training state is spread over data-parallel ranks (<see cref="Sharding.None"/> for one process).</summary>
    public Sharding Sharding { get; }

    /// <summary>Elements of the flat parameter and gradient buffers: the layout's, padded to whole shards.</summary>
    public long FlatLength { get; }

    /// <summary>The gradient buckets under ZeRO stage 2 on several ranks; null when the gradients are one flat buffer.</summary>
    public GradientBuckets? Buckets { get; }

    /// <summary>Master parameters (every rank holds them all: the model reads them, and a rank updates its shard in place).</summary>
    public long ParameterBytes { get; }

    /// <summary>Gradients as the backward writes them (master type): the flat buffer, or under ZeRO 2 the resident part and the bucket slots.</summary>
    public long GradientBytes { get; }

    /// <summary>The rank's shard of the reduced gradients (ZeRO 1 and 2), or 0.</summary>
    public long GradientShardBytes { get; }

    /// <summary>AdamW's two moments (master type; the rank's shard under ZeRO 1 and 2) and its norm/clip pair.</summary>
    public long OptimizerStateBytes { get; }

    /// <summary>The operand-typed copy of the parameters the GEMMs read (bf16 on GPUs), or 0.</summary>
    public long OperandCopyBytes { get; }

    /// <summary>Parameters, gradients, optimizer state and operand copy: what the step needs whatever the plan.</summary>
    public long StaticBytes => StaticBuffers.Sum(b => b.Bytes);

    /// <summary>The static state as the allocations the model and the optimizer make, one per entry.</summary>
    public IReadOnlyList<StaticBuffer> StaticBuffers { get; }

    /// <summary>Workspaces beyond the activations (see <see cref="Workspace"/>).</summary>
    public IReadOnlyList<Workspace> Workspaces { get; }

    /// <summary>The model's tensors outside the sub-layers: the batch, x0 and z0, logits and losses.</summary>
    public IReadOnlyList<ActivationSpec> StateSpecs { get; }

    /// <summary>The scratch the model shares between sub-layers (gradients flowing back, the backward's temporaries).</summary>
    public IReadOnlyList<ActivationSpec> ScratchSpecs { get; }

    /// <summary>FLOPs of one standalone input norm z = N_in(x) (what recomputing a dropped z costs).</summary>
    public double InputNormFlops { get; }

    /// <summary>Model FLOPs of one training step without recomputation (forward and backward, <see cref="KeelModel.TrainingFlopsPerToken"/>).</summary>
    public double StepFlops { get; }

    /// <summary>The tensors sub-layer <paramref name="subLayer"/>'s forward produces, in the model's allocation order.</summary>
    internal IReadOnlyList<InventoryTensor> Tensors(int subLayer)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(subLayer);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(subLayer, Config.SubLayers);
        if (_bySubLayer[subLayer] is { } cached) return cached;
        var kind = subLayer % 2 == 0 ? SubLayerKind.Attention : SubLayerKind.FeedForward;
        var residual = Layout.ResidualNorm(subLayer);
        if (!_tensors.TryGetValue((kind, residual), out var list))
            _tensors[(kind, residual)] = list = Build(kind, residual);
        return _bySubLayer[subLayer] = list;
    }

    /// <summary>The tensors of a general sub-layer of <paramref name="kind"/> (one past the first pair when the model has one).</summary>
    internal IReadOnlyList<InventoryTensor> Tensors(SubLayerKind kind) =>
        Tensors(Math.Min(Config.SubLayers - 2, 2) + (kind == SubLayerKind.Attention ? 0 : 1));

    /// <summary>FLOPs of sub-layer <paramref name="subLayer"/>'s whole forward (each op once).</summary>
    public double ForwardFlops(int subLayer)
    {
        var tensors = Tensors(subLayer);
        if (!_forwardFlops.TryGetValue(tensors, out var flops))
            _forwardFlops[tensors] = flops = tensors.Select(t => t.Producer).Distinct().Sum(op => op.Flops);
        return flops;
    }

    /// <summary>FLOPs of one forward of every sub-layer.</summary>
    public double ChainForwardFlops => _chainForwardFlops ??= Enumerable.Range(0, Config.SubLayers).Sum(ForwardFlops);

    /// <summary>FLOPs of the activation (SwiGLU or GELU) of a feed-forward sub-layer.</summary>
    public double ActivationFlops => Tensors(SubLayerKind.FeedForward).First(t => t.Producer.Class == ProducerClass.Activation).Producer.Flops;

    private List<InventoryTensor> Build(SubLayerKind kind, ResidualNormOptions residual)
    {
        var c = Config;
        long t = Tokens;
        int h = c.Hidden, d = c.HeadDim, f = c.FeedForwardSize;
        int o = Precision.Operand.SizeOf(), m = Precision.Master.SizeOf();
        var specs = SubLayer.ActivationSpecs(kind, c, Precision, BatchSize, residual);
        ForwardOp Gemm(string name, long n, long k, bool rope = false) =>
            new(name, ProducerClass.Gemm, 2.0 * t * n * k + (rope ? 6.0 * t * n : 0), (t * k + n * k + t * n) * o + (rope ? 2 * t * n * o : 0));

        var statistics = specs.Where(s => s.Name.StartsWith("mean_", StringComparison.Ordinal) || s.Name.StartsWith("rstd_", StringComparison.Ordinal)).Sum(s => s.ByteLength);
        var norm = new ForwardOp("residual norm", ProducerClass.Norm, ResidualNormKernels.ForwardFlops(residual, t, h), t * h * (2L * m + 2L * o) + statistics);
        var producers = new Dictionary<string, ForwardOp>(StringComparer.Ordinal);
        if (kind == SubLayerKind.Attention)
        {
            long q = (long)c.Heads * d, kv = (long)c.KvHeads * d;
            var attention = new ForwardOp("attention", ProducerClass.Attention, 2.0 * BatchSize * c.SequenceLength * (double)c.SequenceLength * d * c.Heads,
                                          (t * (2 * q + 2 * kv)) * o + (long)BatchSize * c.Heads * c.SequenceLength * m);
            producers["q"] = Gemm("q projection + RoPE", q, h, rope: true);
            producers["k"] = Gemm("k projection + RoPE", kv, h, rope: true);
            producers["v"] = Gemm("v projection", kv, h);
            producers["o"] = attention;
            producers["lse"] = attention;
            producers["f"] = Gemm("output projection", h, q);
        }
        else
        {
            var swiGlu = c.FeedForward == FeedForwardKind.SwiGlu;
            producers[swiGlu ? "gate_up" : "u"] = Gemm(swiGlu ? "gate and up projections" : "up projection", swiGlu ? 2L * f : f, h);
            producers["h"] = new ForwardOp(swiGlu ? "SwiGLU" : "GELU", ProducerClass.Activation, (swiGlu ? 6.0 : 10.0) * t * f,
                                           (swiGlu ? 3L : 2L) * t * f * o);
            producers["f"] = Gemm("down projection", h, f);
        }
        return [.. specs.Select(s => new InventoryTensor(s, producers.GetValueOrDefault(s.Name) ?? norm))];
    }

    private static List<Workspace> WorkspacesOf(ParameterLayout layout, int batch, MemoryTarget target)
    {
        var list = new List<Workspace>();
        if (target.GemmWorkspaceBytes > 0) list.Add(new("cuBLAS workspace", target.GemmWorkspaceBytes));
        if (!target.RunsKernels) return list;
        foreach (var (scratch, bytes) in KernelScratchBytes(layout, batch, target.Multiprocessors))
            if (bytes > 0) list.Add(new(KernelWorkspace.Describe(scratch), bytes, scratch));
        return list;
    }

    /// <summary>
    /// The kernel launchers' scratch a training step of the model uses, buffer by buffer: the most any op of the step asks
    /// for, from the sizing code the launchers themselves call, so that what a model reserves is what its ops use.
    /// </summary>
    internal static IEnumerable<(KernelScratch Scratch, long Bytes)> KernelScratchBytes(ParameterLayout layout, int batch, int multiprocessors)
    {
        var config = layout.Config;
        var tokens = (long)batch * config.SequenceLength;
        yield return (KernelScratch.GradientNormPartials, OptimizerKernels.MaxPartials * sizeof(float));
        yield return (KernelScratch.TokenErrors, EmbeddingKernels.ErrorWords * sizeof(int));
        yield return (KernelScratch.EmbeddingSort, EmbeddingKernels.SortScratchBytes(tokens, config.Hidden));
        // Every residual norm the step runs backward: the input stage's and each sub-layer's (they differ in which norms run).
        long partials = 0;
        for (var l = -1; l < config.SubLayers; l++)
            partials = Math.Max(partials, ResidualNormKernels.BackwardPartialsElements(layout.ResidualNorm(l), multiprocessors, (int)tokens, config.Hidden));
        yield return (KernelScratch.ResidualNormPartials, partials * sizeof(float));
        if (AttentionKernels.HeadDims.Contains(config.HeadDim))
        {
            var attention = new AttentionOptions(batch, config.SequenceLength, config.Heads, config.KvHeads, config.HeadDim, Causal: true);
            yield return (KernelScratch.AttentionBackward, AttentionKernels.BackwardWorkspaceElements(attention) * sizeof(float));
        }
        yield return (KernelScratch.RopeTable, RopeKernels.TableElements(config.SequenceLength, config.HeadDim) * sizeof(float));
    }
}
