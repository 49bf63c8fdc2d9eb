namespace Keel.Cuda.Driver;

/// <summary>A grid or block size in up to three dimensions; unused dimensions are 1.</summary>
/// <param name="X">Extent along x.</param>
/// <param name="Y">Extent along y.</param>
/// <param name="Z">Extent along z.</param>
public readonly record struct Dim3(int X, int Y = 1, int Z = 1)
{
    /// <summary>X * Y * Z.</summary>
    public long Count => (long)X * Y * Z;
}

/// <summary>How one kernel launch is laid out: the grid of blocks, the threads per block and the dynamic shared memory.</summary>
public readonly record struct LaunchShape
{
    /// <summary>The most threads a block may have on every architecture Keel targets.</summary>
    public const int MaxThreadsPerBlock = 1024;

    /// <summary>The largest grid extent along y or z.</summary>
    public const int MaxGridYZ = 65535;

    /// <summary>Creates a shape, checking every extent.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An extent is out of range.</exception>
    public LaunchShape(Dim3 grid, Dim3 block, int sharedMemoryBytes = 0)
    {
        Validate(grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, sharedMemoryBytes);
        Grid = grid;
        Block = block;
        SharedMemoryBytes = sharedMemoryBytes;
    }

    /// <summary>Blocks in the grid.</summary>
    public Dim3 Grid { get; }

    /// <summary>Threads in each block.</summary>
    public Dim3 Block { get; }

    /// <summary>Dynamic shared memory per block, in bytes.</summary>
    public int SharedMemoryBytes { get; }

    /// <summary>A one-dimensional launch covering <paramref name="elements"/> items with <paramref name="threadsPerBlock"/> threads per block.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="elements"/> is not positive or needs more blocks than a grid holds.</exception>
    public static LaunchShape Linear(long elements, int threadsPerBlock, int sharedMemoryBytes = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(elements);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(threadsPerBlock);
        var blocks = (elements + threadsPerBlock - 1) / threadsPerBlock;
        if (blocks > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(elements), elements, "needs more blocks than a grid holds.");
        return new LaunchShape(new Dim3((int)blocks), new Dim3(threadsPerBlock), sharedMemoryBytes);
    }

    /// <summary>Checks launch extents the way the driver would, naming the offending argument.</summary>
    internal static void Validate(int gridX, int gridY, int gridZ, int blockX, int blockY, int blockZ, int sharedMemoryBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(gridX);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(gridY);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(gridZ);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(gridY, MaxGridYZ);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(gridZ, MaxGridYZ);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockX);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockY);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockZ);
        if ((long)blockX * blockY * blockZ > MaxThreadsPerBlock)
            throw new ArgumentOutOfRangeException(nameof(blockX), $"a block of {blockX}x{blockY}x{blockZ} threads exceeds {MaxThreadsPerBlock}.");
        ArgumentOutOfRangeException.ThrowIfNegative(sharedMemoryBytes);
    }
}
