using System.Globalization;
using System.Runtime.CompilerServices;

namespace Keel.Native.Numerics;

/// <summary>
/// The bfloat16 storage format: the top 16 bits of an IEEE fp32 (8 exponent bits, 7 mantissa bits, relative
/// spacing 2^-8). Conversion from <see cref="float"/> rounds to nearest, ties to even, exactly as the kernels'
/// <c>float_to_bf16</c> and the GPU's <c>cvt.rn.bf16.f32</c> do, so host and device agree bit for bit. NaN
/// stays NaN (quiet); the conversion to <see cref="float"/> is exact.
/// </summary>
public readonly struct BFloat16 : IEquatable<BFloat16>
{
    /// <summary>The raw bits: sign, 8 exponent bits, 7 mantissa bits.</summary>
    public readonly ushort Bits;

    private BFloat16(ushort bits) => Bits = bits;

    /// <summary>Reinterprets <paramref name="bits"/> as a bfloat16.</summary>
    public static BFloat16 FromBits(ushort bits) => new(bits);

    /// <summary>Rounds <paramref name="value"/> to the nearest bfloat16, ties to even.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static BFloat16 FromSingle(float value)
    {
        var bits = BitConverter.SingleToUInt32Bits(value);
        if ((bits & 0x7FFF_FFFFu) > 0x7F80_0000u) return new BFloat16((ushort)((bits >> 16) | 0x0040u));
        // Adding 0x7FFF plus the lowest kept bit rounds half-way cases toward the even neighbour.
        var rounded = bits + 0x7FFFu + ((bits >> 16) & 1u);
        return new BFloat16((ushort)(rounded >> 16));
    }

    /// <summary>The exact fp32 value of this bfloat16.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float ToSingle() => BitConverter.UInt32BitsToSingle((uint)Bits << 16);

    /// <summary>Rounds <paramref name="value"/> to bfloat16 (to nearest, ties to even).</summary>
    public static explicit operator BFloat16(float value) => FromSingle(value);

    /// <summary>The exact fp32 value of <paramref name="value"/>.</summary>
    public static implicit operator float(BFloat16 value) => value.ToSingle();

    /// <summary>Rounds every element of <paramref name="source"/> into <paramref name="destination"/>.</summary>
    /// <exception cref="ArgumentException">The spans differ in length.</exception>
    public static void Convert(ReadOnlySpan<float> source, Span<BFloat16> destination)
    {
        if (source.Length != destination.Length)
            throw new ArgumentException($"source has {source.Length} elements but destination has {destination.Length}.", nameof(destination));
        for (var i = 0; i < source.Length; i++) destination[i] = FromSingle(source[i]);
    }

    /// <summary>Widens every element of <paramref name="source"/> into <paramref name="destination"/> (exact).</summary>
    /// <exception cref="ArgumentException">The spans differ in length.</exception>
    public static void Convert(ReadOnlySpan<BFloat16> source, Span<float> destination)
    {
        if (source.Length != destination.Length)
            throw new ArgumentException($"source has {source.Length} elements but destination has {destination.Length}.", nameof(destination));
        for (var i = 0; i < source.Length; i++) destination[i] = source[i].ToSingle();
    }

    /// <summary>Rounds <paramref name="value"/> through bfloat16 and back: the value a bf16 store would keep.</summary>
    public static float Round(float value) => FromSingle(value).ToSingle();

    /// <inheritdoc />
    public bool Equals(BFloat16 other) => Bits == other.Bits;

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is BFloat16 other && Equals(other);

    /// <inheritdoc />
    public override int GetHashCode() => Bits;

    /// <inheritdoc />
    public override string ToString() => ToSingle().ToString(CultureInfo.InvariantCulture);
}
