namespace Keel.Native.Kernels;

/// <summary>
/// A kernel launch failed at run time: the emulator caught a barrier not every thread reached, a bad warp
/// mask, an out-of-bounds access or a trap. The message names the kernel, the block and the threads.
/// </summary>
public sealed class KernelLaunchException(KernelSpec spec, string kernel, string message)
    : Exception($"{kernel} ({spec}) failed: {message}")
{
    /// <summary>The specialization of the failed kernel.</summary>
    public KernelSpec Spec { get; } = spec;

    /// <summary>The entry point that failed.</summary>
    public string Kernel { get; } = kernel;
}
