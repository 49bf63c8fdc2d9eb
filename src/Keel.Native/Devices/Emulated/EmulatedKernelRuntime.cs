using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Keel.Cuda.Driver;
using Keel.Native.Kernels;

namespace Keel.Native.Devices.Emulated;

/// <summary>
/// Runs kernels on the CPU: each specialization is compiled by <see cref="EmulatorToolchain"/> into a shared
/// object, loaded once, and its entry points launched through <c>keel_emu_launch</c>, one fiber per CUDA thread.
/// </summary>
internal sealed class EmulatedKernelRuntime : IKernelRuntime
{
    private readonly EmulatorToolchain _toolchain;
    private readonly EmulatorOptions _options;
    private readonly ConcurrentDictionary<KernelSpec, IntPtr> _libraries = new();

    public EmulatedKernelRuntime(EmulatorToolchain toolchain, EmulatorLibrary library, EmulatorOptions options)
    {
        _toolchain = toolchain;
        Library = library;
        _options = options;
        MultiprocessorCount = options.WorkerThreads > 0 ? options.WorkerThreads : Environment.ProcessorCount;
    }

    public EmulatorLibrary Library { get; }

    public int MultiprocessorCount { get; }

    public KernelProfiler? Profiler { get; set; }

    public KernelFunction Load(KernelSpec spec, string entryPoint)
    {
        if (!KernelSources.EntryPoints(spec.File).Contains(entryPoint))
            throw new ArgumentException($"{spec.File} has no entry point '{entryPoint}'.", nameof(entryPoint));
        var library = _libraries.GetOrAdd(spec, s => NativeLibrary.Load(_toolchain.KernelLibrary(s, _options.BoundsChecking)));
        var entry = NativeLibrary.GetExport(library, "keel_emu_entry_" + entryPoint);
        return new EmulatedKernelFunction(spec, entryPoint, entry, this);
    }

    /// <summary>Loads an entry point of a CUDA source outside the library (test kernels that plant faults).</summary>
    internal KernelFunction LoadSource(string sourcePath, string entryPoint)
    {
        var entries = KernelSources.EntryPointsIn(File.ReadAllText(sourcePath));
        var spec = new KernelSpec(Path.GetFileName(sourcePath));
        var path = _toolchain.KernelLibrary(Path.GetFileNameWithoutExtension(sourcePath), sourcePath, entries, [], _options.BoundsChecking,
            log => new KernelCompileException(spec, "emulation", log));
        var entry = NativeLibrary.GetExport(NativeLibrary.Load(path), "keel_emu_entry_" + entryPoint);
        return new EmulatedKernelFunction(spec, entryPoint, entry, this);
    }

    private sealed unsafe class EmulatedKernelFunction : KernelFunction
    {
        // A GPU launches with at most 48 KiB of dynamic shared memory until cuFuncSetAttribute raises the function's
        // limit (to at most 227 KiB on sm_90); the emulator holds launches to the same rule, so a launcher that forgets
        // the opt-in fails every emulated test instead of the first GPU run.
        private const int DefaultDynamicSharedBytes = 48 << 10, MaxDynamicSharedBytes = 227 << 10;
        private readonly IntPtr _entry;
        private readonly EmulatedKernelRuntime _runtime;
        private readonly byte* _name;
        private readonly EmulatorLibrary.Options _options;
        private int _dynamicSharedLimit = DefaultDynamicSharedBytes;

        public EmulatedKernelFunction(KernelSpec spec, string name, IntPtr entry, EmulatedKernelRuntime runtime) : base(spec, name, runtime)
        {
            _entry = entry;
            _runtime = runtime;
            // Launchers live as long as their device; the name is allocated once, not per launch.
            _name = EmulatorLibrary.PermanentString(name);
            _options = new EmulatorLibrary.Options
            {
                Size = (uint)sizeof(EmulatorLibrary.Options),
                WorkerThreads = runtime._options.WorkerThreads,
                BoundsChecking = runtime._options.BoundsChecking ? 1 : 0,
                FiberStackBytes = (ulong)runtime._options.FiberStackBytes,
            };
        }

        public override void AllowDynamicSharedMemory(int bytes)
        {
            base.AllowDynamicSharedMemory(bytes);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(bytes, MaxDynamicSharedBytes);
            _dynamicSharedLimit = bytes;
        }

        protected override void LaunchCore(in LaunchShape shape, void** args)
        {
            if (shape.SharedMemoryBytes > _dynamicSharedLimit)
                throw new KernelLaunchException(Spec, Name,
                    $"the launch asks for {shape.SharedMemoryBytes} bytes of dynamic shared memory, above the {_dynamicSharedLimit} this function allows; " +
                    "a GPU refuses it (CUDA_ERROR_INVALID_VALUE) unless AllowDynamicSharedMemory raised the limit after loading.");
            var error = _runtime.Library.Launch(_name, _entry, args,
                new((uint)shape.Grid.X, (uint)shape.Grid.Y, (uint)shape.Grid.Z),
                new((uint)shape.Block.X, (uint)shape.Block.Y, (uint)shape.Block.Z), shape.SharedMemoryBytes, _options);
            if (error is not null) throw new KernelLaunchException(Spec, Name, error);
        }
    }
}
