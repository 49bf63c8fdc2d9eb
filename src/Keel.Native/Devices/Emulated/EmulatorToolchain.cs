using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using Keel.Native.Kernels;

namespace Keel.Native.Devices.Emulated;

/// <summary>
/// Builds what the emulator runs, with the host C++ compiler, into the kernel cache folder: the runtime
/// <c>libkeel_emu.so</c> from its embedded sources (once per source version and compiler), and one shared
/// object per kernel specialization, mirroring NVRTC's role for the GPU. Each output's file name carries a
/// hash of everything that determines it; it is built in a private temporary file and renamed into place,
/// so concurrent processes and interrupted builds never leave a half-written object behind.
/// <para>
/// The compiler is <c>KEEL_CXX</c> if set, else <c>g++</c>. Kernel objects are compiled with
/// <c>-fsanitize=bounds</c> (trapping) when bounds checking is on, with g++'s ThreadSanitizer instrumentation for the
/// checks that watch every access, and link against the runtime by rpath.
/// </para>
/// </summary>
public sealed class EmulatorToolchain
{
    private static readonly ConcurrentDictionary<string, Lazy<string>> Builds = new();
    private readonly Lazy<string> _compilerIdentity;
    private readonly Lazy<string> _sourceFolder;
    private readonly Lazy<string> _runtimeLibrary;

    /// <summary>Builds into <paramref name="cache"/>'s folder (<see cref="KernelCache.Default"/> if null).</summary>
    public EmulatorToolchain(KernelCache? cache = null)
    {
        Folder = Path.Combine((cache ?? KernelCache.Default).Folder, "emulator");
        Compiler = Environment.GetEnvironmentVariable("KEEL_CXX") is { Length: > 0 } cxx ? cxx : "g++";
        _compilerIdentity = new(ReadCompilerIdentity);
        _sourceFolder = new(MaterializeSources);
        _runtimeLibrary = new(BuildRuntime);
    }

    /// <summary>Where sources and objects are kept.</summary>
    public string Folder { get; }

    /// <summary>The host C++ compiler command.</summary>
    public string Compiler { get; }

    /// <summary>The path of <c>libkeel_emu.so</c>, built on first use.</summary>
    /// <exception cref="InvalidOperationException">No C++ compiler, or the runtime failed to build (the message has the compiler's output).</exception>
    public string RuntimeLibrary => _runtimeLibrary.Value;

    /// <summary>The flags every emulated kernel is compiled with (README of kernels/emu says why each is there).</summary>
    public static IReadOnlyList<string> KernelFlags(bool boundsChecking) =>
    [
        "-std=c++17", "-O2", "-fPIC", "-shared", "-DKEEL_EMULATION", "-fno-strict-aliasing", "-fstack-clash-protection",
        .. boundsChecking ? new[] { "-fsanitize=bounds", "-fsanitize-undefined-trap-on-error" } : [],
    ];

    /// <summary>
    /// Added for the checks that watch every memory access (race, init, spin): g++'s ThreadSanitizer instrumentation,
    /// whose hooks the emulation runtime defines; the object is compiled with them and linked without (linking with
    /// <c>-fsanitize=thread</c> would pull in libtsan). DWARF 4 line tables let the reports name source lines.
    /// </summary>
    public static IReadOnlyList<string> InstrumentationFlags { get; } =
        ["-fsanitize=thread", "--param=tsan-distinguish-volatile=1", "--param=tsan-instrument-func-entry-exit=0", "-Wno-tsan", "-gdwarf-4"];

    /// <summary>
    /// The shared object of <paramref name="spec"/>, built on first use: a translation unit that includes the
    /// kernel file and instantiates one trampoline per entry point, compiled against the prelude, with the
    /// instrumentation of <see cref="InstrumentationFlags"/> when <paramref name="instrumented"/>.
    /// </summary>
    /// <exception cref="KernelCompileException">The kernel does not compile for the emulator; the message has file:line.</exception>
    public string KernelLibrary(KernelSpec spec, bool boundsChecking, bool instrumented = false)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var source = Path.Combine(_sourceFolder.Value, "kernels", spec.File);
        return KernelLibrary(Path.GetFileNameWithoutExtension(spec.File), source, KernelSources.EntryPoints(spec.File), spec.DefineOptions,
            boundsChecking, instrumented, log => new KernelCompileException(spec, "emulation", log));
    }

    /// <summary>
    /// Builds the shared object of any CUDA source file written for this project's kernels (it may include
    /// <c>common.cuh</c>), such as the test kernels that plant faults on purpose.
    /// </summary>
    internal string KernelLibrary(string name, string sourcePath, IReadOnlyList<string> entryPoints, IEnumerable<string> defines,
                                  bool boundsChecking, bool instrumented, Func<string, Exception> failure)
    {
        var kernels = Path.Combine(_sourceFolder.Value, "kernels");
        var runtime = RuntimeLibrary;
        var flags = KernelFlags(boundsChecking).Concat(instrumented ? InstrumentationFlags : []).Concat(defines).ToList();
        var key = KernelCache.KeyOf([_compilerIdentity.Value, runtime, kernels, sourcePath, File.ReadAllText(sourcePath), .. flags]);
        var output = Path.Combine(Folder, "kernels", $"{name}{(instrumented ? "-checked" : "")}-{key[..16]}.so");
        return Build(output, temporary =>
        {
            var unit = new StringBuilder($"#include \"{sourcePath}\"\n");
            foreach (var entry in entryPoints) unit.Append($"KEEL_EMU_ENTRY({entry})\n");
            // Kept beside the object: fault messages give offsets into it, and this is the source they map to.
            var unitPath = output + ".cpp";
            File.WriteAllText(unitPath, unit.ToString());
            var runtimeFolder = Path.GetDirectoryName(runtime)!;
            string[] prelude = ["-I", kernels, "-include", Path.Combine(kernels, "emu", "keel_emu.h")];
            string[] link = ["-L", runtimeFolder, "-lkeel_emu", $"-Wl,-rpath,{runtimeFolder}", "-Wl,-z,defs", "-o", temporary];
            if (!instrumented) return [[.. flags, .. prelude, unitPath, .. link]];
            var objectPath = temporary + ".o";
            return [[.. flags.Where(f => f != "-shared"), .. prelude, "-c", unitPath, "-o", objectPath], ["-shared", objectPath, .. link]];
        }, failure);
    }

    private string BuildRuntime()
    {
        var sources = _sourceFolder.Value;
        var emu = Path.Combine(sources, "kernels", "emu");
        var files = Directory.GetFiles(Path.Combine(emu, "src"), "*.cpp").Order(StringComparer.Ordinal).ToList();
        // The assembly context switch is x86-64 only; elsewhere the portable ucontext fiber is compiled alone.
        if (RuntimeInformation.ProcessArchitecture == Architecture.X64) files.Add(Path.Combine(emu, "src", "fiber_x86_64.S"));
        var flags = new List<string>
        {
            "-std=c++17", "-O2", "-fPIC", "-shared", "-fvisibility=hidden", "-fvisibility-inlines-hidden",
            "-DKEEL_EMU_BUILDING_RUNTIME", "-I", emu, "-Wl,-soname,libkeel_emu.so",
            $"-Wl,--version-script={Path.Combine(emu, "src", "exports.map")}",
        };
        var key = KernelCache.KeyOf([_compilerIdentity.Value, sources, .. flags.Select(f => f.Replace(sources, ""))]);
        var output = Path.Combine(Folder, $"runtime-{key[..16]}", "libkeel_emu.so");
        return Build(output, temporary => [[.. flags, .. files, "-lpthread", "-ldl", "-o", temporary]],
            log => new InvalidOperationException($"The emulation runtime failed to build with {Compiler}:{Environment.NewLine}{log}"));
    }

    /// <summary>
    /// Runs the compiler commands <paramref name="commands"/> gives for a temporary output once per output path (per
    /// process), renaming the result into place.
    /// </summary>
    private string Build(string output, Func<string, IReadOnlyList<IReadOnlyList<string>>> commands, Func<string, Exception> failure) =>
        Builds.GetOrAdd(output, path => new Lazy<string>(() =>
        {
            if (File.Exists(path)) return path;
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            var temporary = $"{path}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
            try
            {
                foreach (var command in commands(temporary))
                {
                    var (exitCode, log) = Run(command);
                    if (exitCode != 0) throw failure(log);
                }
                File.Move(temporary, path, overwrite: true);
                return path;
            }
            finally
            {
                File.Delete(temporary);
                File.Delete(temporary + ".o");
            }
        })).Value;

    private (int ExitCode, string Log) Run(IEnumerable<string> arguments)
    {
        var start = new ProcessStartInfo(Compiler) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        Process process;
        try
        {
            process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {Compiler}.");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException(
                $"The emulated device needs a C++17 compiler, and '{Compiler}' could not be started ({e.Message}). Install g++ or set KEEL_CXX.", e);
        }
        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEnd();
            process.WaitForExit();
            return (process.ExitCode, (stdout.Result + stderr).Trim());
        }
    }

    private string ReadCompilerIdentity()
    {
        var (exitCode, log) = Run(["--version"]);
        if (exitCode != 0) throw new InvalidOperationException($"'{Compiler} --version' failed: {log}");
        return log.Split('\n')[0].Trim();
    }

    /// <summary>Writes the embedded kernel and runtime sources to a folder named by their hash (once).</summary>
    private string MaterializeSources()
    {
        var files = KernelSources.Everything.OrderBy(f => f.Key, StringComparer.Ordinal).ToList();
        var key = KernelCache.KeyOf(files.SelectMany(f => new[] { f.Key, f.Value }));
        var folder = Path.Combine(Folder, $"sources-{key[..16]}");
        if (Directory.Exists(folder)) return folder;
        var temporary = $"{folder}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
        foreach (var (name, text) in files)
        {
            var path = Path.Combine(temporary, "kernels", name);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.WriteAllText(path, text);
        }
        try
        {
            Directory.Move(temporary, folder);
        }
        catch (IOException) when (Directory.Exists(folder))
        {
            // Another process materialized the same sources first; its copy is identical.
            Directory.Delete(temporary, recursive: true);
        }
        return folder;
    }
}
