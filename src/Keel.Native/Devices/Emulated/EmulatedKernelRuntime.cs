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
        return new EmulatedKernelFunction(spec, entryPoint, library, this);
    }

    /// <summary>Loads an entry point of a CUDA source outside the library (test kernels that plant faults).</summary>
    internal KernelFunction LoadSource(string sourcePath, string entryPoint)
    {
        var entries = KernelSources.EntryPointsIn(File.ReadAllText(sourcePath));
        var spec = new KernelSpec(Path.GetFileName(sourcePath));
        var path = _toolchain.KernelLibrary(Path.GetFileNameWithoutExtension(sourcePath), sourcePath, entries, [], _options.BoundsChecking,
            log => new KernelCompileException(spec, "emulation", log));
        return new EmulatedKernelFunction(spec, entryPoint, NativeLibrary.Load(path), this);
    }

    /// <summary>
    /// A kernel's parameters as the compiler saw them (<c>keel_emu_signature</c> of <c>kernels/emu/keel_emu_api.h</c>),
    /// read when the entry point is loaded.
    /// </summary>
    [StructLayout(LayoutKind.Sequential)]
    private unsafe struct NativeSignature
    {
        public uint ParameterCount;
        public uint Reserved;
        public uint* ParameterSizes;
        public uint* ParameterAlignments;
        public uint* ParameterKinds;
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
        private readonly (int Size, KernelParameterKind Kind)[] _parameters;
        private int _dynamicSharedLimit = DefaultDynamicSharedBytes;

        public EmulatedKernelFunction(KernelSpec spec, string name, IntPtr library, EmulatedKernelRuntime runtime) : base(spec, name, runtime)
        {
            _entry = NativeLibrary.GetExport(library, "keel_emu_entry_" + name);
            var signature = ((delegate* unmanaged<NativeSignature*>)NativeLibrary.GetExport(library, "keel_emu_signature_" + name))();
            _parameters = new (int, KernelParameterKind)[signature->ParameterCount];
            for (var i = 0; i < _parameters.Length; i++)
                _parameters[i] = ((int)signature->ParameterSizes[i], (KernelParameterKind)signature->ParameterKinds[i]);
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

        protected override void LaunchCore(in LaunchShape shape, ReadOnlySpan<KernelArgument> arguments, void** values)
        {
            CheckArguments(arguments);
            if (shape.SharedMemoryBytes > _dynamicSharedLimit)
                throw new KernelLaunchException(Spec, Name,
                    $"the launch asks for {shape.SharedMemoryBytes} bytes of dynamic shared memory, above the {_dynamicSharedLimit} this function allows; " +
                    "a GPU refuses it (CUDA_ERROR_INVALID_VALUE) unless AllowDynamicSharedMemory raised the limit after loading.");
            var error = _runtime.Library.Launch(_name, _entry, values,
                new((uint)shape.Grid.X, (uint)shape.Grid.Y, (uint)shape.Grid.Z),
                new((uint)shape.Block.X, (uint)shape.Block.Y, (uint)shape.Block.Z), shape.SharedMemoryBytes, _options);
            if (error is not null) throw new KernelLaunchException(Spec, Name, error);
        }

        // The trampoline reads each parameter's bytes through its pointer whatever was put there: an int where the
        // kernel takes an i64 reads four bytes past the value, a pointer for a float reinterprets an address. On a GPU
        // the same launch runs and computes garbage, so the check runs here, where CI sees every launcher's launches.
        private void CheckArguments(ReadOnlySpan<KernelArgument> arguments)
        {
            if (arguments.Length != _parameters.Length)
                throw new KernelLaunchException(Spec, Name,
                    $"the launch passes {arguments.Length} arguments and the kernel takes {_parameters.Length} parameters: {Parameters()}. Nothing ran.");
            for (var i = 0; i < arguments.Length; i++)
            {
                var (size, kind) = _parameters[i];
                if (arguments[i].Size != size || arguments[i].Kind != kind)
                    throw new KernelLaunchException(Spec, Name,
                        $"argument {i} ({arguments[i]}) does not match the kernel's parameter {i} ({KernelArgument.Describe(size, kind)}); " +
                        $"the parameters are: {Parameters()}. Nothing ran.");
            }
        }

        private string Parameters() => string.Join(", ", _parameters.Select(p => KernelArgument.Describe(p.Size, p.Kind)));
    }
}
