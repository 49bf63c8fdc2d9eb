using Keel.Cuda.Driver;

namespace Keel.Native.Kernels;

/// <summary>Launch shapes the launchers use.</summary>
internal static class LaunchShapes
{
    /// <summary><paramref name="blocks"/> one-dimensional blocks of <paramref name="threads"/> threads.</summary>
    public static LaunchShape Blocks(long blocks, int threads, int sharedBytes = 0) =>
        new(new Dim3(checked((int)blocks)), new Dim3(threads), sharedBytes);
}
