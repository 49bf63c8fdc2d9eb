using System.Runtime.CompilerServices;

namespace Keel.Native.Devices;

/// <summary>Argument checks shared by the devices and launchers; each throws before any work starts.</summary>
internal static class Require
{
    public static void Length<T>(DeviceSpan<T> span, long expected, [CallerArgumentExpression(nameof(span))] string? name = null)
        where T : unmanaged
    {
        if (span.Length != expected)
            throw new ArgumentException($"{name} has {span.Length} elements; {expected} expected.", name);
    }

    public static void AtLeast<T>(DeviceSpan<T> span, long expected, [CallerArgumentExpression(nameof(span))] string? name = null)
        where T : unmanaged
    {
        if (span.Length < expected)
            throw new ArgumentException($"{name} has {span.Length} elements; at least {expected} expected.", name);
    }

    public static void Aligned<T>(DeviceSpan<T> span, int bytes, [CallerArgumentExpression(nameof(span))] string? name = null)
        where T : unmanaged
    {
        if (!span.IsAligned(bytes))
            throw new ArgumentException($"{name} at 0x{span.Address:x} is not {bytes}-byte aligned, as the kernel's vector accesses need.", name);
    }

    public static void Positive(long value, [CallerArgumentExpression(nameof(value))] string? name = null)
    {
        if (value <= 0) throw new ArgumentOutOfRangeException(name, value, $"{name} must be positive.");
    }
}
