using Keel.Native.Devices;
using Keel.Native.Numerics;

namespace Keel.Native.Model;

/// <summary>
/// One activation tensor a sub-layer's forward writes: what a memory planner needs to decide whether to keep it
/// until the backward pass or drop it and recompute the sub-layer from its input.
/// </summary>
/// <param name="Name">Its name within the sub-layer (<c>q</c>, <c>gate_up</c>, <c>x_out</c>, ...).</param>
/// <param name="Shape">Its shape for the model's batch.</param>
/// <param name="DType">Its element type under the run's <see cref="ModelPrecision"/>.</param>
/// <param name="NeededByBackward">True when a backward pass reads it (false for values only the forward chain reads).</param>
public sealed record ActivationSpec(string Name, TensorShape Shape, DType DType, bool NeededByBackward)
{
    /// <summary>Bytes the tensor occupies.</summary>
    public long ByteLength => Shape.ElementCount * DType.SizeOf();
}

/// <summary>
/// Device buffers allocated from a list of <see cref="ActivationSpec"/>s, once, before the first step, and
/// looked up by name when a sub-layer is built (never inside a step).
/// </summary>
public sealed class ActivationBuffers : IDisposable
{
    private readonly Dictionary<string, DeviceBuffer> _buffers = new(StringComparer.Ordinal);

    /// <summary>Allocates one buffer per spec on <paramref name="device"/>.</summary>
    public ActivationBuffers(IDevice device, IEnumerable<ActivationSpec> specs)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(specs);
        try
        {
            foreach (var spec in specs)
            {
                _buffers.Add(spec.Name, device.Allocate(spec.DType, spec.Shape));
                ByteLength += spec.ByteLength;
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Total bytes allocated.</summary>
    public long ByteLength { get; }

    /// <summary>The tensor named <paramref name="name"/>.</summary>
    /// <exception cref="KeyNotFoundException">No spec had that name.</exception>
    public Tensor this[string name] => _buffers.TryGetValue(name, out var buffer) ? buffer.Tensor : throw new KeyNotFoundException($"No activation named '{name}'.");

    /// <summary>The tensor named <paramref name="name"/>, or an empty tensor when there is none.</summary>
    public Tensor GetOrEmpty(string name) => _buffers.TryGetValue(name, out var buffer) ? buffer.Tensor : default;

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var buffer in _buffers.Values) buffer.Dispose();
        _buffers.Clear();
    }
}
