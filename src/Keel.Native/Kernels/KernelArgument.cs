using System.Globalization;
using System.Runtime.InteropServices;
using Keel.Native.Devices;

namespace Keel.Native.Kernels;

/// <summary>How a kernel parameter is passed: the C type's category, as the emulator reports it for each parameter.</summary>
/// <remarks>The values are those of <c>keel_emu_parameter_kind</c> in <c>kernels/emu/keel_emu_api.h</c>.</remarks>
public enum KernelParameterKind
{
    /// <summary>A device address (any pointer type).</summary>
    Pointer = 1,

    /// <summary>A signed integer (<c>int</c>, <c>i64</c>).</summary>
    SignedInteger = 2,

    /// <summary>An unsigned integer.</summary>
    UnsignedInteger = 3,

    /// <summary>A floating-point value.</summary>
    Float = 4,

    /// <summary>Anything else passed by value (a struct).</summary>
    Other = 5,
}

/// <summary>
/// One argument of a kernel launch: its value, held inline, its size and its kind. A launcher passes a launch's
/// arguments as a span of these, usually a collection expression the compiler keeps on the stack, so a launch
/// allocates nothing; the emulator checks each against the kernel's parameter (<see cref="KernelFunction.Launch"/>).
/// Made implicitly from what launchers pass: a <see cref="Tensor"/> (its address, or null when it is empty), an
/// <see cref="int"/> (<c>int</c>), a <see cref="long"/> (<c>i64</c>), a <see cref="float"/>; <see cref="Pointer"/>
/// for an address computed by hand.
/// </summary>
/// <example><c>kernel.Launch(shape, [x, y, rows, alpha]);</c> for <c>kernel(const float* x, float* y, i64 rows, float alpha)</c>
/// with <c>long rows</c>.</example>
[StructLayout(LayoutKind.Sequential)]
public readonly struct KernelArgument
{
    // First, so the argument's address is its value's: a launch hands the kernel a pointer to each argument, and the
    // kernel reads the parameter's low Size bytes (every CUDA host is little-endian).
    private readonly ulong _value;

    private KernelArgument(ulong value, int size, KernelParameterKind kind)
    {
        _value = value;
        Size = size;
        Kind = kind;
    }

    /// <summary>Bytes the kernel reads.</summary>
    public int Size { get; }

    /// <summary>What the value is.</summary>
    public KernelParameterKind Kind { get; }

    /// <summary>A device address.</summary>
    public static KernelArgument Pointer(ulong address) => new(address, sizeof(ulong), KernelParameterKind.Pointer);

    /// <summary>The tensor's address, or null for an empty tensor (an absent optional input or output).</summary>
    public static implicit operator KernelArgument(Tensor tensor) => Pointer(tensor.IsEmpty ? 0 : tensor.Address);

    /// <summary>An <c>int</c>.</summary>
    public static implicit operator KernelArgument(int value) => new((uint)value, sizeof(int), KernelParameterKind.SignedInteger);

    /// <summary>An <c>i64</c> (<c>long long</c>).</summary>
    public static implicit operator KernelArgument(long value) => new((ulong)value, sizeof(long), KernelParameterKind.SignedInteger);

    /// <summary>A <c>float</c>.</summary>
    public static implicit operator KernelArgument(float value) => new(BitConverter.SingleToUInt32Bits(value), sizeof(float), KernelParameterKind.Float);

    /// <summary>The argument as a message names it, such as "8-byte pointer".</summary>
    public override string ToString() => Describe(Size, Kind);

    /// <summary>A parameter of <paramref name="size"/> bytes and <paramref name="kind"/> as a message names it.</summary>
    public static string Describe(int size, KernelParameterKind kind)
    {
        var what = kind switch
        {
            KernelParameterKind.Pointer => "pointer",
            KernelParameterKind.SignedInteger => "signed integer",
            KernelParameterKind.UnsignedInteger => "unsigned integer",
            KernelParameterKind.Float => "floating-point value",
            _ => "value of another type",
        };
        return string.Create(CultureInfo.InvariantCulture, $"{size}-byte {what}");
    }
}
