using Keel.Native.Devices;
using Keel.Native.Model;
using Keel.Native.Numerics;
using Keel.Native.Reference;

namespace Keel.Native.Training;

/// <summary>
/// AdamW over a model's flat parameter buffer, on the device: the global gradient norm and clip factor
/// (computed on the device), then the fused AdamW update, once over the matrices with weight decay and once over
/// the norm tensors without, refreshing the operand copy of the parameters when the model has one.
/// </summary>
public sealed class AdamWOptimizer : IDisposable
{
    private readonly KeelModel _model;
    private readonly DeviceBuffer _firstMoment, _secondMoment, _normAndClip;
    private readonly AdamWOptions _decayed, _undecayed;
    private readonly float _clip;
    private readonly float[] _normHost = new float[2];

    /// <summary>Allocates zeroed moments for <paramref name="model"/>.</summary>
    public AdamWOptimizer(KeelModel model, TrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        _model = model;
        _decayed = new AdamWOptions((float)options.Beta1, (float)options.Beta2, (float)options.AdamEpsilon, (float)options.WeightDecay);
        _undecayed = _decayed with { WeightDecay = 0 };
        _clip = (float)options.GradientClip;
        var device = model.Device;
        _firstMoment = device.Allocate(model.Precision.Master, model.Parameters.Shape);
        _secondMoment = device.Allocate(model.Precision.Master, model.Parameters.Shape);
        _normAndClip = device.Allocate(DType.Float32, new TensorShape(2));
        device.Clear(_firstMoment);
        device.Clear(_secondMoment);
    }

    /// <summary>Updates applied so far (AdamW's t after the last one).</summary>
    public int UpdateCount { get; set; }

    /// <summary>The first moments, laid out like the parameters.</summary>
    public Tensor FirstMoment => _firstMoment;

    /// <summary>The second moments, laid out like the parameters.</summary>
    public Tensor SecondMoment => _secondMoment;

    /// <summary>Bytes allocated for the optimizer state.</summary>
    public long AllocatedBytes => _firstMoment.Tensor.ByteLength * 2 + 8;

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
        device.GradientNorm(_model.Gradients, _clip, _normAndClip);
        device.CopyToHost<float>(_normAndClip, _normHost);
        var norm = (double)_normHost[0];
        if (!lossIsFinite || !double.IsFinite(norm) || !float.IsFinite(_normHost[1])) return (norm, false);

        UpdateCount++;
        var layout = _model.Layout;
        var lr = (float)learningRate;
        Update(_decayed, lr, 0, layout.DecayedLength);
        Update(_undecayed, lr, layout.DecayedLength, layout.Length - layout.DecayedLength);
        return (norm, true);
    }

    private void Update(AdamWOptions options, float lr, long start, long length)
    {
        if (length == 0) return;
        var operands = _model.OperandParameters;
        _model.Device.AdamW(options, UpdateCount, lr, _model.Parameters.Slice(start, length), _model.Gradients.Slice(start, length),
            _firstMoment.Tensor.Slice(start, length), _secondMoment.Tensor.Slice(start, length),
            operands.IsEmpty ? default : operands.Slice(start, length), _normAndClip);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _normAndClip.Dispose();
        _secondMoment.Dispose();
        _firstMoment.Dispose();
    }
}
