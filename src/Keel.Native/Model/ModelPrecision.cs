using Keel.Native.Devices;
using Keel.Native.Numerics;

namespace Keel.Native.Model;

/// <summary>
/// The element types of a run, chosen per device so one code path serves every device:
/// <see cref="Master"/> holds the parameters, gradients, optimizer state, the residual stream, norm statistics,
/// logits and losses; <see cref="Operand"/> holds every GEMM operand (the normalized inputs, the branch
/// activations and outputs, the copy of the weights the GEMMs read). When the two differ, the fused AdamW keeps
/// an operand-typed copy of the parameters.
/// </summary>
/// <param name="Master">Float32, or Float64 for gradient checks on the CPU device.</param>
/// <param name="Operand">BFloat16 on GPU devices; equal to Master on the CPU device.</param>
public sealed record ModelPrecision(DType Master, DType Operand)
{
    /// <summary>Float32 or Float64.</summary>
    public DType Master { get; init => field = Check(value, nameof(Master), DType.Float32, DType.Float64); } = Check(Master, nameof(Master), DType.Float32, DType.Float64);

    /// <summary>Float32, BFloat16 or Float64.</summary>
    public DType Operand { get; init => field = Check(value, nameof(Operand), DType.Float32, DType.BFloat16, DType.Float64); } = Check(Operand, nameof(Operand), DType.Float32, DType.BFloat16, DType.Float64);

    /// <summary>Everything in fp32: CPU training.</summary>
    public static ModelPrecision Float32 { get; } = new(DType.Float32, DType.Float32);

    /// <summary>Everything in fp64: whole-model gradient checks on the CPU device.</summary>
    public static ModelPrecision Float64 { get; } = new(DType.Float64, DType.Float64);

    /// <summary>fp32 master state and residual stream, bf16 GEMM operands: the GPU devices.</summary>
    public static ModelPrecision Mixed { get; } = new(DType.Float32, DType.BFloat16);

    /// <summary>The precision a training run uses on <paramref name="device"/>: <see cref="Float32"/> on the CPU, <see cref="Mixed"/> on kernel devices.</summary>
    public static ModelPrecision For(IDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        return device.Kind == DeviceKind.Cpu ? Float32 : Mixed;
    }

    /// <summary>True when the GEMMs read a separate operand-typed copy of the parameters.</summary>
    public bool HasOperandCopy => Operand != Master;

    private static DType Check(DType value, string name, params DType[] allowed) =>
        Array.IndexOf(allowed, value) >= 0 ? value : throw new ArgumentOutOfRangeException(name, value, $"{name} must be one of {string.Join(", ", allowed)}.");
}
