using System.Collections.Concurrent;
using Keel.Cuda.Driver;
using Keel.Native.Kernels;

namespace Keel.Native.Devices.Cuda;

/// <summary>
/// Runs kernels on one GPU: NVRTC compiles each specialization for the device's exact architecture (through
/// the on-disk cache), the module is loaded once, and launches go on the device's stream.
/// </summary>
internal sealed class CudaKernelRuntime : IKernelRuntime, IDisposable
{
    private readonly CudaContext _context;
    private readonly CudaStream _stream;
    private readonly string _architecture;
    private readonly NvrtcKernelCompiler _compiler;
    private readonly ConcurrentDictionary<KernelSpec, CudaModule> _modules = new();

    public CudaKernelRuntime(CudaContext context, CudaStream stream, CudaDeviceInfo info, NvrtcKernelCompiler compiler)
    {
        _context = context;
        _stream = stream;
        _architecture = info.Architecture;
        _compiler = compiler;
        MultiprocessorCount = info.MultiprocessorCount;
        MaxSharedMemoryPerBlockOptInBytes = info.MaxSharedMemoryPerBlockOptInBytes;
    }

    public int MultiprocessorCount { get; }

    public int MaxSharedMemoryPerBlockOptInBytes { get; }

    public KernelProfiler? Profiler { get; set; }

    public KernelFunction Load(KernelSpec spec, string entryPoint)
    {
        if (!KernelSources.EntryPoints(spec.File).Contains(entryPoint))
            throw new ArgumentException($"{spec.File} has no entry point '{entryPoint}'.", nameof(entryPoint));
        var module = _modules.GetOrAdd(spec, s => CudaModule.Load(_context, _compiler.Compile(s, _architecture).Image));
        return new CudaKernelFunction(spec, module.GetFunction(entryPoint), _stream, _context, this);
    }

    public void Dispose()
    {
        foreach (var module in _modules.Values) module.Dispose();
        _modules.Clear();
    }

    private sealed unsafe class CudaKernelFunction(KernelSpec spec, CudaFunction function, CudaStream stream, CudaContext context, IKernelRuntime runtime)
        : KernelFunction(spec, function.Name, runtime)
    {
        public override void AllowDynamicSharedMemory(int bytes)
        {
            base.AllowDynamicSharedMemory(bytes);
            function.SetMaxDynamicSharedMemory(bytes);
        }

        // cuLaunchKernel runs in the calling thread's current context: an op may be the first call a thread makes.
        // The driver takes the values as they are: the emulator, which knows each parameter's type, checks the
        // arguments on every CI run (a GPU offers no such check before CUDA 12.4's cuFuncGetParamInfo).
        protected override void LaunchCore(in LaunchShape shape, ReadOnlySpan<KernelArgument> arguments, void** values)
        {
            CudaDevice.BindContext(context);
            function.Launch(shape, stream, values);
        }
    }
}
