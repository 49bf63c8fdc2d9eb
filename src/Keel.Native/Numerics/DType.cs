namespace Keel.Native.Numerics;

/// <summary>Element types of device tensors.</summary>
public enum DType
{
    /// <summary>IEEE binary32.</summary>
    Float32,
    /// <summary>bfloat16 (<see cref="Numerics.BFloat16"/>).</summary>
    BFloat16,
}

/// <summary>Sizes and names of <see cref="DType"/> values.</summary>
public static class DTypes
{
    /// <summary>Bytes per element.</summary>
    public static int SizeOf(this DType dtype) => dtype switch
    {
        DType.Float32 => 4,
        DType.BFloat16 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null),
    };

    /// <summary>The name the kernels use for the type (<c>float</c> or <c>bf16</c>), for <c>-D</c> specialization.</summary>
    public static string KernelTypeName(this DType dtype) => dtype switch
    {
        DType.Float32 => "float",
        DType.BFloat16 => "bf16",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null),
    };
}
