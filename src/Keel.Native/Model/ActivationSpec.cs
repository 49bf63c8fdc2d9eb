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
