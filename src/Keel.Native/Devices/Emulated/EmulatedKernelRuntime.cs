using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Keel.Cuda.Driver;
using Keel.Cuda.Nvrtc;
using Keel.Native.Kernels;
using Keel.Native.Model;

namespace Keel.Native.Devices.Emulated;

/// <summary>
/// Runs kernels on the CPU: each specialization is compiled by <see cref="EmulatorToolchain"/> into a shared
/// object, loaded once, and its entry points launched through <c>keel_emu_launch</c>, one fiber per CUDA thread.
/// Under <see cref="EmulatorChecks.Race"/>, <see cref="EmulatorChecks.Init"/> or <see cref="EmulatorChecks.Spin"/> the
/// objects are the instrumented ones; under <see cref="EmulatorChecks.Limits"/> each specialization is also compiled by
/// NVRTC for <see cref="EmulatorOptions.Architecture"/> and every launch is held to that GPU's limits.
/// </summary>
internal sealed class EmulatedKernelRuntime : IKernelRuntime
{
    private const EmulatorChecks InstrumentedChecks = EmulatorChecks.Race | EmulatorChecks.Init | EmulatorChecks.Spin;
    private const EmulatorChecks RuntimeChecks = EmulatorChecks.Order | EmulatorChecks.Async | InstrumentedChecks;
    private readonly EmulatorToolchain _toolchain;
    private readonly EmulatorOptions _options;
    private readonly Lazy<NvrtcKernelCompiler> _nvrtc;
    private readonly ConcurrentDictionary<KernelSpec, IntPtr> _libraries = new();
    private readonly ConcurrentDictionary<KernelSpec, IReadOnlyList<KernelResourceUsage>> _resources = new();

    public EmulatedKernelRuntime(EmulatorToolchain toolchain, EmulatorLibrary library, EmulatorOptions options, KernelCache? cache)
    {
        _toolchain = toolchain;
        Library = library;
        _options = options;
        Architecture = GpuArchitecture.Named(options.Architecture);
        _nvrtc = new(() => new NvrtcKernelCompiler(cache));
        MultiprocessorCount = options.WorkerThreads > 0 ? options.WorkerThreads : Environment.ProcessorCount;
    }

    public EmulatorLibrary Library { get; }

    /// <summary>The GPU this runtime stands in for.</summary>
    public GpuArchitecture Architecture { get; }

    public int MultiprocessorCount { get; }

    public int MaxSharedMemoryPerBlockOptInBytes => Architecture.SharedMemoryPerBlockOptIn;

    public KernelProfiler? Profiler { get; set; }

    private bool Instrumented => (_options.Checks & InstrumentedChecks) != 0;

    public KernelFunction Load(KernelSpec spec, string entryPoint)
    {
        if (!KernelSources.EntryPoints(spec.File).Contains(entryPoint))
            throw new ArgumentException($"{spec.File} has no entry point '{entryPoint}'.", nameof(entryPoint));
        var library = _libraries.GetOrAdd(spec, s => NativeLibrary.Load(_toolchain.KernelLibrary(s, _options.BoundsChecking, Instrumented)));
        var resources = Resources(spec, entryPoint, () => _nvrtc.Value.Compile(spec, Architecture.Name).Image);
        return new EmulatedKernelFunction(spec, entryPoint, library, resources, this);
    }

    /// <summary>Loads an entry point of a CUDA source outside the library (test kernels that plant faults).</summary>
    internal KernelFunction LoadSource(string sourcePath, string entryPoint)
    {
        var text = File.ReadAllText(sourcePath);
        var entries = KernelSources.EntryPointsIn(text);
        var spec = new KernelSpec(Path.GetFileName(sourcePath));
        var path = _toolchain.KernelLibrary(Path.GetFileNameWithoutExtension(sourcePath), sourcePath, entries, [], _options.BoundsChecking, Instrumented,
            log => new KernelCompileException(spec, "emulation", log));
        var resources = Resources(spec, entryPoint, () =>
        {
            var result = NvrtcCompiler.Compile(text, spec.File, KernelSources.Headers, NvrtcKernelCompiler.OptionsFor(spec, Architecture.Name), NvrtcOutput.Cubin);
            return result.Succeeded ? result.Image : throw new KernelCompileException(spec, Architecture.Name, result.Log);
        });
        return new EmulatedKernelFunction(spec, entryPoint, NativeLibrary.Load(path), resources, this);
    }

    /// <summary>Under <see cref="EmulatorChecks.Limits"/>, what ptxas gave the entry point for <see cref="Architecture"/>; else null.</summary>
    private KernelResourceUsage? Resources(KernelSpec spec, string entryPoint, Func<byte[]> compile)
    {
        if (!_options.Checks.HasFlag(EmulatorChecks.Limits)) return null;
        var usages = _resources.GetOrAdd(spec, _ =>
        {
            try
            {
                return CubinReader.Read(compile());
            }
            catch (Exception e) when (e is Keel.Cuda.Interop.CudaLibraryNotFoundException or ArgumentException)
            {
                throw new InvalidOperationException(
                    $"The emulator's limits check compiles each kernel with NVRTC for {Architecture.Name} to learn its registers and shared memory, and that failed for {spec}: {e.Message}", e);
            }
        });
        return usages.FirstOrDefault(u => u.Name == entryPoint)
               ?? throw new InvalidOperationException($"NVRTC's image of {spec} for {Architecture.Name} has no entry point '{entryPoint}'.");
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
        // limit (to at most the architecture's opt-in limit); the emulator holds launches to the same rule, so a launcher
        // that forgets the opt-in fails every emulated test instead of the first GPU run.
        private const int DefaultDynamicSharedBytes = 48 << 10;
        private readonly IntPtr _entry;
        private readonly EmulatedKernelRuntime _runtime;
        private readonly KernelResourceUsage? _resources;
        private readonly byte* _name;
        private readonly EmulatorLibrary.Options _options;
        private readonly (int Size, KernelParameterKind Kind)[] _parameters;
        private readonly ulong _seed;
        private int _dynamicSharedLimit = DefaultDynamicSharedBytes;

        public EmulatedKernelFunction(KernelSpec spec, string name, IntPtr library, KernelResourceUsage? resources, EmulatedKernelRuntime runtime)
            : base(spec, name, runtime)
        {
            _entry = NativeLibrary.GetExport(library, "keel_emu_entry_" + name);
            var signature = ((delegate* unmanaged<NativeSignature*>)NativeLibrary.GetExport(library, "keel_emu_signature_" + name))();
            _parameters = new (int, KernelParameterKind)[signature->ParameterCount];
            for (var i = 0; i < _parameters.Length; i++)
                _parameters[i] = ((int)signature->ParameterSizes[i], (KernelParameterKind)signature->ParameterKinds[i]);
            _runtime = runtime;
            _resources = resources;
            // Launchers live as long as their device; the name is allocated once, not per launch.
            _name = EmulatorLibrary.PermanentString(name);
            var options = runtime._options;
            _options = new EmulatorLibrary.Options
            {
                Size = (uint)sizeof(EmulatorLibrary.Options),
                WorkerThreads = options.WorkerThreads,
                BoundsChecking = options.BoundsChecking ? 1 : 0,
                FiberStackBytes = (ulong)options.FiberStackBytes,
                Checks = (uint)(options.Checks & RuntimeChecks),
            };
            _seed = SeededRandom.Mix(options.Seed ^ SeededRandom.Mix(StableHash(spec + "/" + name)));
        }

        public override void AllowDynamicSharedMemory(int bytes)
        {
            base.AllowDynamicSharedMemory(bytes);
            var architecture = _runtime.Architecture;
            if (bytes > architecture.SharedMemoryPerBlockOptIn)
                throw new ArgumentOutOfRangeException(nameof(bytes), bytes,
                    $"{Name}: {bytes} bytes of dynamic shared memory exceed the {architecture.SharedMemoryPerBlockOptIn} a block may opt into on {architecture.Name}.");
            _dynamicSharedLimit = bytes;
        }

        protected override void LaunchCore(in LaunchShape shape, ReadOnlySpan<KernelArgument> arguments, void** values)
        {
            CheckArguments(arguments);
            if (shape.SharedMemoryBytes > _dynamicSharedLimit)
                throw new KernelLaunchException(Spec, Name,
                    $"the launch asks for {shape.SharedMemoryBytes} bytes of dynamic shared memory, above the {_dynamicSharedLimit} this function allows; " +
                    "a GPU refuses it (CUDA_ERROR_INVALID_VALUE) unless AllowDynamicSharedMemory raised the limit after loading.");
            if (_resources is { } resources &&
                _runtime.Architecture.WhyNotLaunchable((int)shape.Block.Count, resources.Registers, resources.StaticSharedBytes, shape.SharedMemoryBytes) is { } why)
                throw new KernelLaunchException(Spec, Name, $"a block of {shape.Block.Count} threads cannot launch on {_runtime.Architecture.Name}: {why}.");
            var options = _options;
            // The schedule follows from the seed, the kernel and the shape alone, so a failure repeats with the same seed.
            options.Seed = SeededRandom.Mix(_seed ^ SeededRandom.Mix((uint)shape.Grid.X | (ulong)(uint)shape.Grid.Y << 32) ^ (ulong)(uint)shape.Grid.Z << 40 ^ (ulong)shape.Block.Count << 16);
            var error = _runtime.Library.Launch(_name, _entry, values,
                new((uint)shape.Grid.X, (uint)shape.Grid.Y, (uint)shape.Grid.Z),
                new((uint)shape.Block.X, (uint)shape.Block.Y, (uint)shape.Block.Z), shape.SharedMemoryBytes, options);
            if (error is not null)
            {
                var checks = _runtime._options.Checks;
                throw new KernelLaunchException(Spec, Name, checks == EmulatorChecks.None ? error
                    : $"{error} (emulator checks {EmulatorChecksText.Format(checks)}, seed {_runtime._options.Seed})");
            }
        }

        // string.GetHashCode differs between processes; the schedule must not.
        private static ulong StableHash(string text)
        {
            var hash = 14695981039346656037UL;
            foreach (var c in text) hash = (hash ^ c) * 1099511628211UL;
            return hash;
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
