namespace Keel.Native.Devices.Emulated;

/// <summary>How the emulator runs kernels.</summary>
/// <param name="BoundsChecking">
/// Catch out-of-bounds accesses: device memory ends at a guard page, kernels are compiled with array bounds
/// checks, dynamic shared memory is guarded. On by default: the emulator exists to find bugs.
/// </param>
/// <param name="WorkerThreads">OS threads that run blocks; 0 means one per core.</param>
/// <param name="FiberStackBytes">Stack of each emulated CUDA thread; 0 means the runtime's default (64 KiB).</param>
public sealed record EmulatorOptions(bool BoundsChecking = true, int WorkerThreads = 0, long FiberStackBytes = 0)
{
    /// <summary>OS threads that run blocks; 0 means one per core.</summary>
    public int WorkerThreads { get; init => field = NotNegative(value, nameof(WorkerThreads)); } = NotNegative(WorkerThreads, nameof(WorkerThreads));

    /// <summary>Stack of each emulated CUDA thread; 0 means the runtime's default.</summary>
    public long FiberStackBytes { get; init => field = NotNegative(value, nameof(FiberStackBytes)); } = NotNegative(FiberStackBytes, nameof(FiberStackBytes));

    private static T NotNegative<T>(T value, string name) where T : System.Numerics.INumber<T> =>
        T.IsNegative(value) ? throw new ArgumentOutOfRangeException(name, value, $"{name} must not be negative.") : value;
}
