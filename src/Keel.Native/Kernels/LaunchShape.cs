namespace Keel.Native.Kernels;

/// <summary>Three extents, as CUDA's <c>dim3</c>.</summary>
public readonly record struct Dim3(uint X, uint Y = 1, uint Z = 1)
{
    /// <summary>X·Y·Z.</summary>
    public ulong Volume => (ulong)X * Y * Z;

    /// <inheritdoc />
    public override string ToString() => Y == 1 && Z == 1 ? $"{X}" : $"({X},{Y},{Z})";
}

/// <summary>The grid, the block and the dynamic shared memory of one kernel launch.</summary>
public readonly record struct LaunchShape(Dim3 Grid, Dim3 Block, uint SharedBytes = 0)
{
    /// <summary>A one-dimensional launch of <paramref name="blocks"/> blocks of <paramref name="threads"/> threads.</summary>
    public static LaunchShape Linear(long blocks, int threads, uint sharedBytes = 0)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blocks, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(blocks, int.MaxValue);
        return new LaunchShape(new Dim3((uint)blocks), new Dim3((uint)threads), sharedBytes);
    }

    /// <inheritdoc />
    public override string ToString() => $"grid {Grid} x block {Block}, {SharedBytes} B shared";
}
