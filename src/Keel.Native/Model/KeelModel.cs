using System.Numerics;
using Keel.Native.Devices;
using Keel.Native.Memory;
using Keel.Native.Numerics;
using Keel.Native.Reference;

namespace Keel.Native.Model;

/// <summary>
/// A Keel Transformer (or a baseline) on one device, for a fixed batch of <see cref="BatchSize"/> sequences of
/// <see cref="ModelConfig.SequenceLength"/> tokens. Everything it needs is allocated by the constructor: the flat
/// parameter, gradient and (when the precision asks for one) operand-copy buffers, and one arena holding every
/// activation, the batch, the logits and the scratch at the offsets its <see cref="Plan"/> assigned; a step allocates
/// nothing on the device.
/// <para>
/// Forward: x0 = embed(tokens); the input stage forms z0 = N_in(x0) (or z0 = x0 without input norms); sub-layer
/// l maps (x_l, z_l) to (x_{l+1}, z_{l+1}); the LM head reads z_L (the last sub-layer's normalized output, or
/// Pre-LN's final norm); fused softmax cross-entropy gives each token's loss and, when training, writes dLogits
/// over the logits. Backward runs the chain in reverse and accumulates into <see cref="Gradients"/>.
/// </para>
/// <para>
/// The LM head has <see cref="ModelConfig.PaddedVocabularySize"/> (Vp) rows, the vocabulary rounded up to a multiple of
/// 64, so the logits are [tokens, Vp] and their GEMMs keep aligned dimensions; the padded rows are zero, so the padded
/// logits are zero, and the loss, which reads only the vocabulary's columns, writes their gradient as zero, so the padded
/// rows stay zero through training. The embedding reads the table's true [vocab, hidden] rows.
/// </para>
/// <para>
/// Both run the plan's schedule (<see cref="StepSchedule"/>): which forwards keep their tensors, which residual-stream
/// states are kept, and which sub-layers (or norms and activations) run again just before their backward. Every
/// policy computes the same losses and gradients (bit for bit on the CPU device): a recomputed tensor is the output of
/// the same deterministic op on the same inputs, and the backward runs in the same order.
/// </para>
/// <para>
/// The plan also says how the flat buffers are laid out for a data-parallel run (<see cref="MemoryInventory.Sharding"/>):
/// padded to whole shards, and under ZeRO stage 2 with the gradients in <see cref="GradientBuckets"/> instead of one flat
/// buffer, each sub-layer's backward framed by the calls of <see cref="BucketObserver"/>.
/// </para>
/// </summary>
public sealed class KeelModel : IDisposable
{
    private readonly ModelContext _context;
    private readonly DeviceBuffer _parameters, _arena;
    private readonly DeviceBuffer? _operands, _gradients, _residentGradients, _gradientSlots;
    private readonly SubLayer[] _subLayers;
    private readonly BoundOp[] _ops, _tapedForwards;
    private readonly int _forwardOps;
    private readonly ResidualNormOptions _inputStage;
    private readonly ResidualNormOptions[] _formInput;
    private readonly NormWeights _inputNorm, _inputNormGradients;
    private readonly NormStatistics _inputStatistics, _formStatistics;
    private readonly Tensor _x0, _z0, _yScratch, _dLogits, _head, _headGradient;
    private readonly Tensor[] _dx, _dz;
    private readonly float[] _lossesFloat;
    private readonly double[] _lossesDouble;
    private bool _withLoss;
    private float _lossGradientScale;
    private Tensor _dy, _dzNext;
    private int _previous;

    /// <summary>
    /// Builds the model on <paramref name="device"/>: validates <paramref name="config"/> and allocates everything
    /// (parameters uninitialized; call <see cref="Initialize"/> or <see cref="LoadParameters{T}"/>).
    /// </summary>
    /// <param name="device">Where the model lives.</param>
    /// <param name="config">The model.</param>
    /// <param name="precision">Element types.</param>
    /// <param name="batchSize">Sequences per forward pass.</param>
    /// <param name="plan">The memory plan to run (made by <see cref="MemoryPlanner"/> for this config, precision and batch size); by default, keep everything.</param>
    /// <exception cref="ArgumentException">The config cannot work (the message names the field), the batch size is not positive, or the plan is for another model.</exception>
    public KeelModel(IDevice device, ModelConfig config, ModelPrecision precision, int batchSize, MemoryPlan? plan = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(precision);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        config.Validate();
        if (plan is not null && (plan.Inventory.Config != config || plan.Inventory.Precision != precision || plan.Inventory.BatchSize != batchSize))
            throw new ArgumentException($"The memory plan is for another model (batch {plan.Inventory.BatchSize}, {plan.Inventory.Precision.Master}/{plan.Inventory.Precision.Operand}, L = {plan.Inventory.Config.SubLayers}).", nameof(plan));
        Plan = plan ?? MemoryPlanner.Plan(new MemoryInventory(config, precision, batchSize, MemoryTarget.For(device)), MemoryPolicy.Store);
        Layout = Plan.Inventory.Layout;
        Device = device;
        BatchSize = batchSize;
        var owned = new List<IDisposable>();
        var flat = new TensorShape(Plan.Inventory.FlatLength);
        var buckets = Plan.Inventory.Buckets;
        try
        {
            _parameters = Own(owned, device.Allocate(precision.Master, flat));
            if (buckets is null)
            {
                _gradients = Own(owned, device.Allocate(precision.Master, flat));
            }
            else
            {
                _residentGradients = Own(owned, device.Allocate(precision.Master, new TensorShape(buckets.ResidentLength)));
                _gradientSlots = Own(owned, device.Allocate(precision.Master, new TensorShape(buckets.Slots * buckets.SlotLength)));
            }
            _operands = precision.HasOperandCopy ? Own(owned, device.Allocate(precision.Operand, new TensorShape(Layout.Length))) : null;
            // One allocation for every activation; its size is a multiple of the plan's alignment, so of 4 bytes.
            _arena = Own(owned, device.Allocate(DType.Float32, new TensorShape(Math.Max(1, Plan.Arena.Bytes / sizeof(float)))));
            // The kernels' scratch the plan counted, which the device keeps: reserved now, so that no op allocates and a
            // CUDA graph captured later keeps valid addresses.
            foreach (var workspace in Plan.Inventory.Workspaces)
                if (workspace.Scratch is { } scratch) device.ReserveScratch(scratch, workspace.Bytes);
        }
        catch
        {
            for (var i = owned.Count - 1; i >= 0; i--) owned[i].Dispose();
            throw;
        }
        // The padding that makes whole shards stays zero: the ranks gather and write it like any other element.
        if (Plan.Inventory.FlatLength > Layout.Length) device.Clear(_parameters.Tensor.Slice(Layout.Length, Plan.Inventory.FlatLength - Layout.Length));
        _inputStage = Layout.ResidualNorm(-1);
        _formInput = new ResidualNormOptions[config.SubLayers];
        for (var l = 0; l < config.SubLayers; l++)
            _formInput[l] = l == 0 ? _inputStage : _inputStage with { InputNorm = Layout.InputNorm(l) is not null };
        _context = new ModelContext(device, config, precision, Layout, batchSize, Parameters, _operands?.Tensor ?? Parameters, _gradients?.Tensor ?? default,
                                    buckets, _residentGradients?.Tensor ?? default, _gradientSlots?.Tensor ?? default);
        _subLayers = new SubLayer[config.SubLayers];
        for (var l = 0; l < config.SubLayers; l++)
            _subLayers[l] = l % 2 == 0 ? new AttentionSubLayer(_context, l) : new FeedForwardSubLayer(_context, l);

        var schedule = Plan.Schedule;
        TokenIds = Named("tokens");
        Targets = Named("targets");
        Losses = Named("losses");
        Logits = Named("logits");
        _x0 = Named("x0");
        _z0 = Named("z0");
        _yScratch = Named("y_scratch");
        _dLogits = Named("d_logits");
        _head = Layout.PaddedView(_context.Operands, Layout.LmHead);
        _headGradient = _context.PaddedGradient(Layout.LmHead);
        _dx = [Named("dx_0"), Named("dx_1")];
        _dz = [Named("dz_0"), Named("dz_1")];
        _inputNorm = Layout.View(_parameters, Layout.InputNorm(0));
        _inputNormGradients = _context.NormGradients(Layout.InputNorm(0));
        _inputStatistics = new NormStatistics(default, default, Named("mean_in"), Named("rstd_in"));
        _formStatistics = new NormStatistics(default, default, Named("form_mean"), Named("form_rstd"));
        var bound = new Dictionary<IReadOnlyList<TensorRef>, Tensor[]>(ReferenceEqualityComparer.Instance);
        _ops = [.. schedule.Ops.Select(op => new BoundOp(op, View(op.X), View(op.Z), Views(op.Saved, bound), Views(op.Scratch, bound),
                                                          [.. op.Steps.Select(step => Views(step, bound))]))];
        _forwardOps = schedule.ForwardOpCount;
        _tapedForwards = new BoundOp[config.SubLayers];
        foreach (var op in _ops.Where(o => o.Op.Kind == StepOpKind.Forward && o.Op.Taped)) _tapedForwards[op.Op.SubLayer] = op;
        for (var l = 0; l < config.SubLayers; l++) _subLayers[l].Tape = _tapedForwards[l].Saved;

        _lossesFloat = precision.Master == DType.Float32 ? new float[Tokens] : [];
        _lossesDouble = precision.Master == DType.Float64 ? new double[Tokens] : [];
        GradientBytes = (_gradients?.Tensor.ByteLength ?? 0) + (_residentGradients?.Tensor.ByteLength ?? 0) + (_gradientSlots?.Tensor.ByteLength ?? 0);
        AllocatedBytes = _parameters.Tensor.ByteLength + GradientBytes + (_operands?.Tensor.ByteLength ?? 0) + _arena.Tensor.ByteLength;

        Tensor Named(string name) => schedule.Named.TryGetValue(name, out var r) ? View(r) : default;
    }

    /// <summary>The device everything lives on.</summary>
    public IDevice Device { get; }

    /// <summary>The model's config.</summary>
    public ModelConfig Config => _context.Config;

    /// <summary>The element types of this model's tensors.</summary>
    public ModelPrecision Precision => _context.Precision;

    /// <summary>Where each parameter tensor lives in the flat buffers.</summary>
    public ParameterLayout Layout { get; }

    /// <summary>The memory plan this model runs: its schedule and the arena offsets of every activation.</summary>
    public MemoryPlan Plan { get; }

    /// <summary>Sequences per forward pass.</summary>
    public int BatchSize { get; }

    /// <summary>Tokens per forward pass: BatchSize · SequenceLength.</summary>
    public int Tokens => BatchSize * Config.SequenceLength;

    /// <summary>The sub-layers, in order.</summary>
    public IReadOnlyList<SubLayer> SubLayers => _subLayers;

    /// <summary>The flat master parameters [<see cref="ParameterLayout.Length"/>].</summary>
    public Tensor Parameters => _parameters.Tensor.Slice(0, Layout.Length);

    /// <summary>The flat gradients, laid out like the parameters; empty when they pass through <see cref="GradientBuckets"/>.</summary>
    public Tensor Gradients => _gradients?.Tensor.Slice(0, Layout.Length) ?? default;

    /// <summary>The parameters with the padding that makes whole shards (<see cref="MemoryInventory.FlatLength"/>); it stays zero.</summary>
    internal Tensor FlatParameters => _parameters;

    /// <summary>The flat gradients with the padding of <see cref="FlatParameters"/>; empty when they pass through <see cref="GradientBuckets"/>.</summary>
    internal Tensor FlatGradients => _gradients?.Tensor ?? default;

    /// <summary>Under ZeRO stage 2 on several ranks, where the gradients live (null when they are one flat buffer).</summary>
    public GradientBuckets? GradientBuckets => Plan.Inventory.Buckets;

    /// <summary>The resident part of bucketed gradients (the prefix, then the suffix; <see cref="Model.GradientBuckets.Resident"/>).</summary>
    internal Tensor ResidentGradients => _residentGradients?.Tensor ?? default;

    /// <summary>Bucket slot <paramref name="slot"/> of bucketed gradients.</summary>
    internal Tensor GradientSlot(int slot) => _gradientSlots!.Tensor.Slice(slot * GradientBuckets!.SlotLength, GradientBuckets.SlotLength);

    /// <summary>
    /// With bucketed gradients, told before and after each sub-layer's backward: it clears (or primes) the sub-layer's slot
    /// before, and takes the gradients out of it after. Required when <see cref="GradientBuckets"/> is set.
    /// </summary>
    internal IGradientBucketObserver? BucketObserver { get; set; }

    /// <summary>Bytes of the gradient buffers (flat, or resident and slots).</summary>
    public long GradientBytes { get; }

    /// <summary>The operand-typed copy of the parameters the GEMMs read, or empty when the GEMMs read <see cref="Parameters"/>.</summary>
    public Tensor OperandParameters => _operands?.Tensor ?? default;

    /// <summary>Token ids of the current batch [tokens] (Int32), written by <see cref="SetBatch"/>.</summary>
    public Tensor TokenIds { get; }

    /// <summary>Targets of the current batch [tokens] (Int32; −1 ignores a position).</summary>
    public Tensor Targets { get; }

    /// <summary>
    /// The logits [tokens, <see cref="ModelConfig.PaddedVocabularySize"/>] (master type) after a forward pass, of which the
    /// first <see cref="ModelConfig.VocabularySize"/> columns are the vocabulary's (the rest, the padded rows' products, are
    /// zero); dLogits after a training forward (until the backward), zero in the padded columns.
    /// </summary>
    public Tensor Logits { get; }

    /// <summary>Each token's loss [tokens] (master type) after a forward pass with targets (kept through the backward).</summary>
    public Tensor Losses { get; }

    /// <summary>x0, the embedding output [tokens, hidden].</summary>
    public Tensor Embedded => _x0;

    /// <summary>Bytes this model allocated on the device: parameters, gradients, operand copy and the activation arena (the plan's figures exactly).</summary>
    public long AllocatedBytes { get; }

    /// <summary>The scratch tensors shared by all sub-layers (not kept between them), for a memory planner.</summary>
    public static IReadOnlyList<ActivationSpec> ScratchSpecs(ModelConfig config, ModelPrecision precision, int batchSize)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(precision);
        long tokens = (long)batchSize * config.SequenceLength;
        var rows = new TensorShape(tokens, config.Hidden);
        var specs = new List<ActivationSpec>
        {
            new("d_f", rows, precision.Operand, false),
            new("dx_0", rows, precision.Master, false),
            new("dx_1", rows, precision.Master, false),
            // Gradients reaching the operands z are operands too: GEMMs write them (fp32 accumulation inside) and
            // the residual-norm kernels read them in the operand type.
            new("dz_0", rows, precision.Operand, false),
            new("dz_1", rows, precision.Operand, false),
            new("y_scratch", rows, precision.Master, false),
            new("form_rstd", new TensorShape(tokens), precision.Master, false),
        };
        if (config.Norm == NormKind.Layer) specs.Add(new("form_mean", new TensorShape(tokens), precision.Master, false));
        if (precision.HasOperandCopy) specs.Add(new("d_logits", new TensorShape(tokens, config.PaddedVocabularySize), precision.Operand, false));
        specs.AddRange(AttentionSubLayer.ScratchSpecs(config, precision, batchSize));
        specs.AddRange(FeedForwardSubLayer.ScratchSpecs(config, precision, batchSize));
        return specs;
    }

    /// <summary>What the model keeps outside the sub-layers: the batch, x0 and z0 with the input stage's statistics, logits and losses.</summary>
    public static IReadOnlyList<ActivationSpec> StateSpecs(ParameterLayout layout, ModelPrecision precision, int batchSize)
    {
        ArgumentNullException.ThrowIfNull(layout);
        ArgumentNullException.ThrowIfNull(precision);
        var config = layout.Config;
        var inputStage = layout.ResidualNorm(-1);
        long tokens = (long)batchSize * config.SequenceLength;
        var rows = new TensorShape(tokens, config.Hidden);
        var specs = new List<ActivationSpec>
        {
            new("tokens", new TensorShape(tokens), DType.Int32, true),
            new("targets", new TensorShape(tokens), DType.Int32, true),
            new("x0", rows, precision.Master, true),
            new("z0", rows, precision.Operand, true),
            new("logits", new TensorShape(tokens, config.PaddedVocabularySize), precision.Master, true),
            new("losses", new TensorShape(tokens), precision.Master, false),
        };
        if (inputStage.InputNorm && config.Norm == NormKind.Layer) specs.Add(new("mean_in", new TensorShape(tokens), precision.Master, true));
        if (inputStage.InputNorm) specs.Add(new("rstd_in", new TensorShape(tokens), precision.Master, true));
        return specs;
    }

    /// <summary>
    /// Fills the parameters from <paramref name="seed"/>: every matrix N(0, InitStd²) (DeepNorm's FFN, V and O
    /// scaled by (8M)^(-1/4)), gains 1, biases 0, padding 0 (the vocabulary matrices' padded rows included). Each tensor
    /// draws from its own stream over its true shape, so the values depend only on the seed and the tensor's index (not on
    /// the padding). Tensors go to the device one at a time, so the host holds at most one of them, whatever the model's size.
    /// </summary>
    public void Initialize(ulong seed)
    {
        Device.Clear(Parameters);
        var host = new double[Layout.Tensors.Max(t => t.Length)];
        for (var i = 0; i < Layout.Tensors.Count; i++)
        {
            var t = Layout.Tensors[i];
            var span = host.AsSpan(0, (int)t.Length);
            if (t.InitStd > 0)
            {
                var random = new SeededRandom(seed, (ulong)i);
                for (var j = 0; j < span.Length; j++) span[j] = t.InitStd * random.NextNormal();
            }
            else if (t.IsGain)
            {
                span.Fill(1);
            }
            else
            {
                continue;
            }
            HostCopy.Upload<double>(Device, span, Layout.View(Parameters, i));
        }
        RefreshOperands();
    }

    /// <summary>
    /// Copies flat master parameters (laid out by <see cref="Layout"/>) from the host and refreshes the operand copy. The
    /// padding (between tensors, and the vocabulary matrices' rows past the vocabulary) must be zero: the LM head's padded
    /// rows would otherwise give padded logits that are not zero, and nothing in training would bring them back.
    /// </summary>
    /// <typeparam name="T">float or double; converted to the master type.</typeparam>
    /// <exception cref="ArgumentException">The length is not the layout's, or a padding element is not zero (the message says where).</exception>
    public void LoadParameters<T>(ReadOnlySpan<T> flat) where T : unmanaged, INumberBase<T>
    {
        if (flat.Length != Layout.Length) throw new ArgumentException($"{flat.Length} values given; the layout has {Layout.Length}.", nameof(flat));
        long next = 0;
        var after = "the start";
        foreach (var t in Layout.Tensors)
        {
            RequireZeroPadding(flat, next, t.Offset, after);
            (next, after) = (t.Offset + t.Length, t.Name);
        }
        RequireZeroPadding(flat, next, flat.Length, after);
        HostCopy.Upload(Device, flat, Parameters);
        RefreshOperands();

        static void RequireZeroPadding(ReadOnlySpan<T> flat, long from, long to, string after)
        {
            for (var i = (int)from; i < to; i++)
                if (!T.IsZero(flat[i])) throw new ArgumentException($"flat[{i}] is {flat[i]}, in the padding after {after}, which must be zero.", nameof(flat));
        }
    }

    /// <summary>Copies the flat master parameters to the host (converted to <typeparamref name="T"/>, float or double).</summary>
    public void ReadParameters<T>(Span<T> flat) where T : unmanaged, INumberBase<T> => CopyOut(Parameters, flat);

    /// <summary>Copies the flat gradients to the host (converted to <typeparamref name="T"/>, float or double).</summary>
    /// <exception cref="InvalidOperationException">The gradients pass through buckets (no flat copy exists).</exception>
    public void ReadGradients<T>(Span<T> flat) where T : unmanaged, INumberBase<T> =>
        CopyOut(_gradients is not null ? Gradients : throw new InvalidOperationException("The gradients pass through buckets (ZeRO stage 2); there is no flat copy to read."), flat);

    /// <summary>Re-derives the operand-typed copy from the master parameters (after the host changed them).</summary>
    public void RefreshOperands()
    {
        if (_operands is not null) Device.Convert(Parameters, _operands);
    }

    /// <summary>Sets every gradient to zero (once per optimizer step: every backward accumulates); bucket slots are the observer's to clear.</summary>
    public void ZeroGradients() => Device.Clear(_gradients ?? _residentGradients!);

    /// <summary>Copies a batch to the device: token ids and targets, each [tokens] (targets may be −1 to ignore a position).</summary>
    public void SetBatch(ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets)
    {
        if (tokens.Length != Tokens) throw new ArgumentException($"{tokens.Length} tokens given; the model takes {Tokens} ({BatchSize} × {Config.SequenceLength}).", nameof(tokens));
        if (targets.Length != Tokens) throw new ArgumentException($"{targets.Length} targets given; the model takes {Tokens}.", nameof(targets));
        var vocab = Config.VocabularySize;
        foreach (var t in tokens)
            if ((uint)t >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(tokens), t, $"Token id {t} is outside the vocabulary [0, {vocab}).");
        foreach (var t in targets)
            if (t != CrossEntropy.IgnoreTarget && (uint)t >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(targets), t, $"Target {t} is outside the vocabulary [0, {vocab}) and not −1.");
        Device.CopyFromHost(tokens, TokenIds);
        Device.CopyFromHost(targets, Targets);
    }

    /// <summary>
    /// The forward pass over the current batch up to the logits; then, with <paramref name="withLoss"/>, each
    /// token's loss, and with <paramref name="lossGradientScale"/> &gt; 0, dLogits = (softmax − onehot)·scale
    /// written over the logits for <see cref="Backward"/>.
    /// </summary>
    public void Forward(bool withLoss = true, float lossGradientScale = 0f)
    {
        _withLoss = withLoss;
        _lossGradientScale = lossGradientScale;
        Run(0, _forwardOps);
    }

    /// <summary>Back-propagates from the dLogits a training <see cref="Forward"/> left, accumulating into <see cref="Gradients"/> (recomputing what the plan dropped).</summary>
    /// <exception cref="InvalidOperationException">The gradients pass through buckets and no <see cref="BucketObserver"/> takes them.</exception>
    public void Backward()
    {
        if (GradientBuckets is not null && BucketObserver is null)
            throw new InvalidOperationException("The gradients pass through buckets (ZeRO stage 2), and no observer takes them out of the slots.");
        Run(_forwardOps, _ops.Length);
    }

    /// <summary>
    /// Writes z_l = N_in_l(x_l) (or z_l = x_l in operand type when sub-layer <paramref name="subLayer"/> has no
    /// input norm) from x_l alone, into the input of sub-layer l's taped forward. The forward pass does this for l = 0;
    /// the fused kernel of sub-layer l − 1 does it for l ≥ 1, and a plan that dropped z_l runs it before the backward.
    /// </summary>
    public void FormInput(int subLayer)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(subLayer);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(subLayer, _subLayers.Length);
        var op = _tapedForwards[subLayer];
        FormInputInto(subLayer, op.X, op.Z);
    }

    /// <summary>Re-runs sub-layer <paramref name="subLayer"/>'s taped forward from its input x_l (z_l formed again first), rewriting its saved tensors.</summary>
    public void RecomputeSubLayer(int subLayer)
    {
        FormInput(subLayer);
        var op = _tapedForwards[subLayer];
        _subLayers[subLayer].Forward(op.X, op.Z, op.Saved);
    }

    /// <summary>The sum of the token losses of the last forward pass, in fp64 (a host copy; waits for the device).</summary>
    public double SumLosses()
    {
        double sum = 0;
        if (Precision.Master == DType.Float32)
        {
            Device.CopyToHost<float>(Losses, _lossesFloat);
            foreach (var v in _lossesFloat) sum += v;
        }
        else
        {
            Device.CopyToHost<double>(Losses, _lossesDouble);
            foreach (var v in _lossesDouble) sum += v;
        }
        return sum;
    }

    /// <summary>
    /// Model FLOPs of one training step per token (forward + backward): 6 per matrix parameter a token passes
    /// through (the embedding lookup excluded, the LM head included over the true vocabulary: the padded rows' products
    /// are work the device does, not the model's), plus causal attention counted as FlashAttention does (forward
    /// 2·S·D·heads per token, backward 2.5 times that).
    /// </summary>
    public static double TrainingFlopsPerToken(ModelConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        var layout = new ParameterLayout(config);
        double matrices = layout.Tensors.Where(t => t.Decayed).Sum(t => (double)t.Length) - (config.TiedEmbeddings ? 0 : (double)config.VocabularySize * config.Hidden);
        double attention = 3.5 * 2.0 * config.SequenceLength * config.HeadDim * config.Heads * config.Blocks;
        return 6 * matrices + attention;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _arena.Dispose();
        _operands?.Dispose();
        _gradientSlots?.Dispose();
        _residentGradients?.Dispose();
        _gradients?.Dispose();
        _parameters.Dispose();
    }

    /// <summary>Runs ops [<paramref name="from"/>, <paramref name="to"/>) of the schedule.</summary>
    private void Run(int from, int to)
    {
        for (var i = from; i < to; i++)
        {
            var op = _ops[i];
            var l = op.Op.SubLayer;
            switch (op.Op.Kind)
            {
                case StepOpKind.Embed:
                    Device.EmbeddingForward(TokenIds, Layout.View(Parameters, Layout.Embedding), _x0);
                    FormInputInto(0, _x0, _z0);
                    break;
                case StepOpKind.FormInput:
                    FormInputInto(l, op.X, op.Z);
                    break;
                case StepOpKind.Forward:
                    _subLayers[l].Forward(op.X, op.Z, op.Saved);
                    break;
                case StepOpKind.Advance:
                {
                    Tensor x = op.X, z = op.Z;
                    for (var j = 0; j < op.Steps.Length; j++)
                    {
                        var subLayer = _subLayers[l + j];
                        var saved = op.Steps[j];
                        subLayer.Forward(x, z, saved);
                        (x, z) = (saved[subLayer.OutputIndex], saved[subLayer.OutputOperandIndex]);
                    }
                    break;
                }
                case StepOpKind.RecomputeActivation:
                    ((FeedForwardSubLayer)_subLayers[l]).Activate(op.X, op.Z);
                    break;
                case StepOpKind.Head:
                    Device.Gemm(op.Z, false, _head, true, Logits);
                    if (_withLoss) Device.CrossEntropy(Logits, Config.VocabularySize, Targets, Losses, _lossGradientScale > 0 ? Logits : default, _lossGradientScale);
                    break;
                case StepOpKind.HeadBackward:
                    HeadBackward(op.Z);
                    break;
                case StepOpKind.Backward:
                {
                    var current = 1 - _previous;
                    BucketObserver?.BeforeBackward(l);
                    _subLayers[l].Backward(op.X, op.Z, op.Saved, _dy, _dzNext, _dx[current], _dz[current], op.Scratch);
                    BucketObserver?.AfterBackward(l);
                    (_dy, _dzNext, _previous) = (_dx[current], _dz[current], current);
                    break;
                }
                case StepOpKind.InputBackward:
                    var dEmbedded = _dx[1 - _previous];
                    Device.ResidualNormBackward(_inputStage, _x0, default, _x0, NormWeights.None, _inputNorm, _inputStatistics, _dy, _dzNext,
                                                dEmbedded, default, NormWeights.None, _inputNormGradients);
                    Device.EmbeddingBackward(TokenIds, dEmbedded, _context.Gradient(Layout.Embedding));
                    break;
            }
        }
    }

    /// <summary>The LM head's gradients from dLogits (in the logits' place): its weight gradient and dz_L into dz_1.</summary>
    private void HeadBackward(Tensor zLast)
    {
        var dLogits = Logits;
        if (Precision.HasOperandCopy)
        {
            dLogits = _dLogits;
            Device.Convert(Logits, dLogits);
        }
        Device.Gemm(dLogits, true, zLast, false, _headGradient, beta: 1f);
        Device.Gemm(dLogits, false, _head, false, _dz[1]);
        (_dy, _dzNext, _previous) = (default, _dz[1], 1);
    }

    /// <summary>z = N_in_l(x) into <paramref name="z"/> (the input stage's statistics for l = 0, the scratch ones otherwise).</summary>
    private void FormInputInto(int subLayer, Tensor x, Tensor z)
    {
        var options = _formInput[subLayer];
        Device.ResidualNormForward(options, x, default, NormWeights.None, Layout.View(Parameters, Layout.InputNorm(subLayer)),
                                   _yScratch, z, subLayer == 0 ? _inputStatistics : options.InputNorm ? _formStatistics : default);
    }

    private Tensor View(TensorRef r) =>
        r.IsNone ? default : new Tensor(_arena.Tensor.Address + (ulong)Plan.Offset(r.Resource, r.Offset), r.Spec!.DType, r.Spec.Shape);

    private Tensor[] Views(IReadOnlyList<TensorRef> refs, Dictionary<IReadOnlyList<TensorRef>, Tensor[]> bound)
    {
        if (refs.Count == 0) return [];
        if (!bound.TryGetValue(refs, out var views)) bound[refs] = views = [.. refs.Select(View)];
        return views;
    }

    /// <summary>A schedule op with its tensors resolved to arena views (ops that share a placement share the arrays).</summary>
    private sealed record BoundOp(StepOp Op, Tensor X, Tensor Z, Tensor[] Saved, Tensor[] Scratch, Tensor[][] Steps);

    private void CopyOut<T>(Tensor source, Span<T> host) where T : unmanaged, INumberBase<T>
    {
        if (host.Length != Layout.Length) throw new ArgumentException($"{host.Length} values requested; the layout has {Layout.Length}.", nameof(host));
        HostCopy.Download(Device, source, host);
    }

    private static TDisposable Own<TDisposable>(List<IDisposable> owned, TDisposable item) where TDisposable : IDisposable
    {
        owned.Add(item);
        return item;
    }
}
