using System.Runtime.CompilerServices;
using Keel.Native.Devices;

namespace Keel.Native.Kernels.Launchers;

/// <summary>
/// Aliasing checks for kernels whose parameters are <c>__restrict__</c> or that allow exactly one form of
/// in-place use; a partial overlap would silently give wrong results, so it is rejected before the launch.
/// </summary>
internal static class Overlap
{
    /// <summary>Throws when <paramref name="output"/> shares any byte with <paramref name="input"/>.</summary>
    public static void RequireDisjoint(Tensor output, Tensor input,
                                       [CallerArgumentExpression(nameof(output))] string? name = null,
                                       [CallerArgumentExpression(nameof(input))] string? inputName = null)
    {
        if (Overlaps(output, input))
            throw new ArgumentException($"{name} must not overlap {inputName}.", name);
    }

    /// <summary>Throws when <paramref name="output"/> overlaps <paramref name="input"/> without being the very same tensor (in place).</summary>
    public static void RequireSameOrDisjoint(Tensor output, Tensor input,
                                             [CallerArgumentExpression(nameof(output))] string? name = null,
                                             [CallerArgumentExpression(nameof(input))] string? inputName = null)
    {
        if (Overlaps(output, input) && (output.Address != input.Address || output.ByteLength != input.ByteLength))
            throw new ArgumentException($"{name} must be {inputName} itself or not overlap it.", name);
    }

    private static bool Overlaps(Tensor a, Tensor b) =>
        !a.IsEmpty && !b.IsEmpty && a.Address < b.Address + (ulong)b.ByteLength && b.Address < a.Address + (ulong)a.ByteLength;
}
