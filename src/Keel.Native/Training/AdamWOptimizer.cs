using Keel.Native.Devices;
using Keel.Native.Distributed;
using Keel.Native.Model;
using Keel.Native.Numerics;
using Keel.Native.Reference;

namespace Keel.Native.Training;

/// <summary>
/// AdamW over a model's flat parameter buffer, on the device: the global gradient norm and clip factor
/// (computed on the device), then the fused AdamW update, once over the matrices with weight decay and once over
/// the norm tensors without, refreshing the operand copy of the parameters when the model has one.
/// <para>
/// When the model's plan shards the optimizer (ZeRO stage 1 or 2 on several ranks, <see cref="Sharding"/>), this rank's
/// optimizer holds the moments of its shard only, and a gradient shard into which the ranks' gradients are reduced. A
/// step then measures the norm of the shard, sums the squares over the ranks (host values, in fp64) into the global norm
/// and clip factor, updates the rank's slice of the master weights in place, gathers every rank's slice back into the
/// full buffer, and refreshes the operand copy from it. Every rank takes the same decision to apply or skip a step.
/// </para>
/// </summary>
public sealed class AdamWOptimizer : IDisposable
{
    private readonly KeelModel _model;
    private readonly DeviceBuffer _firstMoment, _secondMoment, _normAndClip;
    private readonly DeviceBuffer? _gradientShard;
    private readonly ICollectives? _collectives;
    private readonly AdamWOptions _decayed, _undecayed;
    private readonly float _clip;
    private readonly float[] _normHost = new float[2];

    /// <summary>Allocates zeroed moments for <paramref name="model"/> (for this rank's shard when its plan shards the optimizer).</summary>
    /// <param name="model">The model whose parameters it updates.</param>
    /// <param name="options">AdamW's hyper-parameters and the clipping threshold.</param>
    /// <param name="collectives">The ranks of a data-parallel run whose plan shards the optimizer; null otherwise.</param>
    /// <exception cref="ArgumentException">The plan shards the optimizer over ranks that <paramref name="collectives"/> does not match.</exception>
    public AdamWOptimizer(KeelModel model, TrainingOptions options, ICollectives? collectives = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        _model = model;
        _decayed = new AdamWOptions((float)options.Beta1, (float)options.Beta2, (float)options.AdamEpsilon, (float)options.WeightDecay);
        _undecayed = _decayed with { WeightDecay = 0 };
        _clip = (float)options.GradientClip;
        var sharding = model.Plan.Inventory.Sharding;
        if (sharding.ShardsOptimizer && (collectives is null || collectives.Size != sharding.Ranks))
            throw new ArgumentException($"The model's plan shards the optimizer over {sharding.Ranks} ranks; the collectives given span {collectives?.Size ?? 1}.", nameof(collectives));
        var device = model.Device;
        var flat = model.Plan.Inventory.FlatLength;
        (ShardStart, var length) = sharding.ShardsOptimizer ? sharding.Shard(collectives!.Rank, model.Layout.Length) : (0, flat);
        var owned = new List<IDisposable>();
        try
        {
            var shape = new TensorShape(length);
            _firstMoment = Own(owned, device.Allocate(model.Precision.Master, shape));
            _secondMoment = Own(owned, device.Allocate(model.Precision.Master, shape));
            _normAndClip = Own(owned, device.Allocate(DType.Float32, new TensorShape(2)));
            if (sharding.ShardsOptimizer) _gradientShard = Own(owned, device.Allocate(model.Precision.Master, shape));
        }
        catch
        {
            for (var i = owned.Count - 1; i >= 0; i--) owned[i].Dispose();
            throw;
        }
        device.Clear(_firstMoment);
        device.Clear(_secondMoment);
        if (sharding.ShardsOptimizer) _collectives = collectives;
    }

    /// <summary>Updates applied so far (AdamW's t after the last one).</summary>
    public int UpdateCount { get; set; }

    /// <summary>The first moments: laid out like the parameters, or this rank's shard of them (from <see cref="ShardStart"/>).</summary>
    public Tensor FirstMoment => _firstMoment;

    /// <summary>The second moments, laid out like <see cref="FirstMoment"/>.</summary>
    public Tensor SecondMoment => _secondMoment;

    /// <summary>The flat element of the parameters that element 0 of the moments belongs to (0 unless sharded).</summary>
    public long ShardStart { get; }

    /// <summary>True when this optimizer holds one rank's shard of the state.</summary>
    public bool IsSharded => _gradientShard is not null;

    /// <summary>
    /// The gradients a step reads: the model's flat gradients, or under sharding the rank's gradient shard, into which
    /// the ranks' gradients are reduced before <see cref="Step"/>.
    /// </summary>
    public Tensor Gradients => _gradientShard?.Tensor ?? _model.FlatGradients;

    /// <summary>Bytes allocated for the optimizer state: the moments and the norm/clip pair.</summary>
    public long AllocatedBytes => _firstMoment.Tensor.ByteLength * 2 + _normAndClip.Tensor.ByteLength;

    /// <summary>Bytes of the gradient shard (0 unless sharded).</summary>
    public long GradientShardBytes => _gradientShard?.Tensor.ByteLength ?? 0;

    /// <summary>
    /// Measures the gradients' global norm; when it is finite and <paramref name="lossIsFinite"/>, clips and
    /// applies one update at <paramref name="learningRate"/>. Returns the norm (before clipping) and whether the
    /// update was applied.
    /// </summary>
    /// <remarks>
    /// Reading the norm back waits for the device once per step (after the norm's two kernels), so on a GPU the AdamW
    /// launches reach an idle device: the cost of deciding the skip, and reporting the norm, on the host.
    /// </remarks>
    public (double GradientNorm, bool Applied) Step(double learningRate, bool lossIsFinite)
    {
        var device = _model.Device;
        device.GradientNorm(Gradients, _clip, _normAndClip);
        device.CopyToHost<float>(_normAndClip, _normHost);
        var norm = (double)_normHost[0];
        if (_collectives is not null) norm = GlobalNorm(norm);
        if (!lossIsFinite || !double.IsFinite(norm) || !float.IsFinite(_normHost[1])) return (norm, false);

        UpdateCount++;
        var layout = _model.Layout;
        var lr = (float)learningRate;
        Update(_decayed, lr, 0, layout.DecayedLength);
        Update(_undecayed, lr, layout.DecayedLength, layout.Length);
        if (_collectives is null) return (norm, true);
        // Every rank's updated slice into every rank's full copy, then the operand copy the GEMMs read.
        _collectives.AllGather(_model.FlatParameters.Slice(ShardStart, _firstMoment.Tensor.Length), _model.FlatParameters);
        _model.RefreshOperands();
        return (norm, true);
    }

    /// <summary>
    /// The global norm from this shard's <paramref name="shardNorm"/>: the squares summed over the ranks in fp64; the clip
    /// factor follows from it as the device computes it, and both are written where AdamW reads them.
    /// </summary>
    private double GlobalNorm(double shardNorm)
    {
        Span<double> squares = [shardNorm * shardNorm];
        _collectives!.AllReduceSum(squares);
        var norm = Math.Sqrt(squares[0]);
        _normHost[0] = (float)norm;
        _normHost[1] = _clip > 0 ? (float)GradNorm.ClipFactor(norm, _clip) : 1f;
        _model.Device.CopyFromHost<float>(_normHost, _normAndClip);
        return norm;
    }

    /// <summary>One fused AdamW call over the flat elements [start, end) that lie in this optimizer's shard.</summary>
    private void Update(AdamWOptions options, float lr, long start, long end)
    {
        var length = _firstMoment.Tensor.Length;
        var from = Math.Max(start, ShardStart);
        var to = Math.Min(end, ShardStart + length);
        if (to <= from) return;
        long local = from - ShardStart, count = to - from;
        // Sharded, the operand copy is refreshed whole after the gather instead.
        var operands = _model.OperandParameters;
        _model.Device.AdamW(options, UpdateCount, lr, _model.FlatParameters.Slice(from, count), Gradients.Slice(local, count),
            _firstMoment.Tensor.Slice(local, count), _secondMoment.Tensor.Slice(local, count),
            operands.IsEmpty || IsSharded ? default : operands.Slice(from, count), _normAndClip);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _gradientShard?.Dispose();
        _normAndClip.Dispose();
        _secondMoment.Dispose();
        _firstMoment.Dispose();
    }

    private static TDisposable Own<TDisposable>(List<IDisposable> owned, TDisposable item) where TDisposable : IDisposable
    {
        owned.Add(item);
        return item;
    }
}
