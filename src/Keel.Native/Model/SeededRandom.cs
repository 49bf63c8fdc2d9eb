namespace Keel.Native.Model;

/// <summary>
/// A small, fully specified random generator (SplitMix64), so that initialization and data sampling give the
/// same numbers on every machine and .NET version, which bit-exact CPU runs and resumes rely on.
/// <para>
/// A struct, so that making one (once per micro-batch of every training step) allocates nothing. Like any mutable
/// struct it is passed by <c>ref</c>: a copy continues the sequence on its own.
/// </para>
/// </summary>
public struct SeededRandom
{
    private ulong _state;

    /// <summary>A generator for <paramref name="seed"/> mixed with any number of <paramref name="streams"/> (for example a step and a micro-batch index).</summary>
    public SeededRandom(ulong seed, params ReadOnlySpan<ulong> streams)
    {
        _state = seed;
        foreach (var stream in streams) _state = Mix(_state ^ Mix(stream + 0x9E3779B97F4A7C15UL));
    }

    /// <summary>The next 64 uniformly random bits.</summary>
    public ulong NextUInt64()
    {
        _state += 0x9E3779B97F4A7C15UL;
        return Mix(_state);
    }

    /// <summary>A uniform double in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>A uniform integer in [0, <paramref name="exclusiveMax"/>).</summary>
    public long NextInt64(long exclusiveMax)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(exclusiveMax);
        // Multiply-shift: the bias is below 2^-64 · exclusiveMax, far under anything a data loader could notice.
        return (long)Math.BigMul(NextUInt64(), (ulong)exclusiveMax, out _);
    }

    /// <summary>A standard normal sample (Box–Muller on two uniforms).</summary>
    public double NextNormal()
    {
        var u1 = 1.0 - NextDouble();
        var u2 = NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
    }

    /// <summary>SplitMix64's finalizer: a bijection of 64-bit values whose every output bit depends on every input bit.</summary>
    internal static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
