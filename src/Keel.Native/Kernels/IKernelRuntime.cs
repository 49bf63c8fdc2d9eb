namespace Keel.Native.Kernels;

/// <summary>
/// Where kernels run: a CUDA device (NVRTC to CUBIN, the driver launches) or the CPU emulator (g++ to a
/// shared object, fibers launch). Typed launchers are written once against this interface.
/// </summary>
public interface IKernelRuntime
{
    /// <summary>Compiles (or finds cached) <paramref name="spec"/>, loads it once, and returns its entry point <paramref name="entryPoint"/>.</summary>
    /// <exception cref="KernelCompileException">The specialization does not compile.</exception>
    /// <exception cref="ArgumentException">The file has no such entry point.</exception>
    KernelFunction Load(KernelSpec spec, string entryPoint);

    /// <summary>Streaming multiprocessors (the emulator reports its worker threads), for sizing grids.</summary>
    int MultiprocessorCount { get; }

    /// <summary>
    /// The most shared memory a block may use, static and dynamic together, once a function has opted in
    /// (<see cref="KernelFunction.AllowDynamicSharedMemory"/>): launchers choose their tiles by it (99 KiB on sm_86 and sm_89,
    /// 163 KiB on sm_80, 227 KiB on sm_90).
    /// </summary>
    int MaxSharedMemoryPerBlockOptInBytes { get; }

    /// <summary>The profiler this runtime's launches report to, or null (profiling off, the default).</summary>
    KernelProfiler? Profiler { get; set; }
}
