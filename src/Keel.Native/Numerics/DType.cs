namespace Keel.Native.Numerics;

/// <summary>Element types of tensors.</summary>
public enum DType
{
    /// <summary>IEEE binary32: master weights, the residual stream, statistics, gradients.</summary>
    Float32,
    /// <summary>bfloat16 (<see cref="Numerics.BFloat16"/>): GEMM operands on the GPU.</summary>
    BFloat16,
    /// <summary>IEEE binary64: the CPU device only, for gradient checks against finite differences.</summary>
    Float64,
    /// <summary>32-bit signed integers: token ids and targets.</summary>
    Int32,
}

/// <summary>Sizes and names of <see cref="DType"/> values.</summary>
public static class DTypes
{
    /// <summary>Bytes per element.</summary>
    public static int SizeOf(this DType dtype) => dtype switch
    {
        DType.Float32 or DType.Int32 => 4,
        DType.BFloat16 => 2,
        DType.Float64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null),
    };

    /// <summary>The <see cref="DType"/> of the CLR type <typeparamref name="T"/>.</summary>
    /// <exception cref="NotSupportedException"><typeparamref name="T"/> is not a tensor element type.</exception>
    public static DType Of<T>() where T : unmanaged =>
        typeof(T) == typeof(float) ? DType.Float32
        : typeof(T) == typeof(BFloat16) ? DType.BFloat16
        : typeof(T) == typeof(double) ? DType.Float64
        : typeof(T) == typeof(int) ? DType.Int32
        : throw new NotSupportedException($"{typeof(T).Name} is not a tensor element type.");

    /// <summary>The name the kernels use for the type (<c>float</c>, <c>bf16</c>), for <c>-D</c> specialization.</summary>
    public static string KernelTypeName(this DType dtype) => dtype switch
    {
        DType.Float32 => "float",
        DType.BFloat16 => "bf16",
        DType.Int32 => "int",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "No kernel type for this element type."),
    };
}
