using System.Text;
using Keel.Cuda.Interop;

namespace Keel.Cuda.Nvrtc;

/// <summary>The NVRTC run-time compiler: its version, the GPU architectures it targets, and compilation.</summary>
public static unsafe class NvrtcCompiler
{
    /// <summary>NVRTC's version as (major, minor), for example (12, 4).</summary>
    /// <exception cref="CudaLibraryNotFoundException">NVRTC is not installed where Keel looks.</exception>
    public static Version Version
    {
        get
        {
            CudaLibraries.Require(CudaLibrary.Nvrtc);
            NvrtcNative.Check(NvrtcNative.nvrtcVersion(out var major, out var minor), "nvrtcVersion");
            return new Version(major, minor);
        }
    }

    /// <summary>The compute capabilities NVRTC can compile for, as numbers such as 80 and 90.</summary>
    public static IReadOnlyList<int> SupportedArchitectures
    {
        get
        {
            CudaLibraries.Require(CudaLibrary.Nvrtc);
            NvrtcNative.Check(NvrtcNative.nvrtcGetNumSupportedArchs(out var count), "nvrtcGetNumSupportedArchs");
            var archs = new int[count];
            fixed (int* p = archs) NvrtcNative.Check(NvrtcNative.nvrtcGetSupportedArchs(p), "nvrtcGetSupportedArchs");
            return archs;
        }
    }

    /// <summary>
    /// Compiles one CUDA C++ translation unit. <paramref name="name"/> is the file name NVRTC uses in its
    /// log (so errors read <c>name(line): error: ...</c>); <paramref name="headers"/> maps each include name to
    /// its text, since NVRTC reads no files. A compilation error is not an exception: the result carries
    /// <see cref="NvrtcResult.Succeeded"/> = false and the log.
    /// </summary>
    /// <exception cref="CudaException">NVRTC failed for a reason other than an error in the source (for example an unknown option).</exception>
    public static NvrtcResult Compile(string source, string name, IReadOnlyDictionary<string, string> headers,
                                      IReadOnlyList<string> options, NvrtcOutput output)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentException.ThrowIfNullOrEmpty(name);
        CudaLibraries.Require(CudaLibrary.Nvrtc);

        using var strings = new Utf8Strings();
        var headerNames = headers.Keys.ToArray();
        var headerPtrs = stackalloc byte*[Math.Max(1, headerNames.Length)];
        var includePtrs = stackalloc byte*[Math.Max(1, headerNames.Length)];
        for (var i = 0; i < headerNames.Length; i++)
        {
            headerPtrs[i] = strings.Add(headers[headerNames[i]]);
            includePtrs[i] = strings.Add(headerNames[i]);
        }
        var optionPtrs = stackalloc byte*[Math.Max(1, options.Count)];
        for (var i = 0; i < options.Count; i++) optionPtrs[i] = strings.Add(options[i]);

        var created = NvrtcNative.nvrtcCreateProgram(out var program, strings.Add(source), strings.Add(name),
                                                     headerNames.Length, headerPtrs, includePtrs);
        using (program)
        {
            NvrtcNative.Check(program.DiscardUnlessCreated(created), "nvrtcCreateProgram");
            var status = NvrtcNative.nvrtcCompileProgram(program, options.Count, optionPtrs);
            var log = ReadLog(program);
            if (status == NvrtcCompilationError) return new NvrtcResult(false, log, []);
            NvrtcNative.Check(status, "nvrtcCompileProgram");
            var image = output == NvrtcOutput.Cubin ? ReadCubin(program) : ReadPtx(program);
            return new NvrtcResult(true, log, image);
        }
    }

    private const int NvrtcCompilationError = 6;

    private static string ReadLog(NvrtcProgram program)
    {
        NvrtcNative.Check(NvrtcNative.nvrtcGetProgramLogSize(program, out var size), "nvrtcGetProgramLogSize");
        var bytes = new byte[(int)size];
        fixed (byte* p = bytes) NvrtcNative.Check(NvrtcNative.nvrtcGetProgramLog(program, p), "nvrtcGetProgramLog");
        return Encoding.UTF8.GetString(bytes).TrimEnd('\0').TrimEnd();
    }

    private static byte[] ReadCubin(NvrtcProgram program)
    {
        NvrtcNative.Check(NvrtcNative.nvrtcGetCUBINSize(program, out var size), "nvrtcGetCUBINSize");
        var bytes = new byte[(int)size];
        fixed (byte* p = bytes) NvrtcNative.Check(NvrtcNative.nvrtcGetCUBIN(program, p), "nvrtcGetCUBIN");
        return bytes;
    }

    private static byte[] ReadPtx(NvrtcProgram program)
    {
        NvrtcNative.Check(NvrtcNative.nvrtcGetPTXSize(program, out var size), "nvrtcGetPTXSize");
        var bytes = new byte[(int)size];
        fixed (byte* p = bytes) NvrtcNative.Check(NvrtcNative.nvrtcGetPTX(program, p), "nvrtcGetPTX");
        return bytes;
    }
}

/// <summary>What <see cref="NvrtcCompiler.Compile"/> should produce.</summary>
public enum NvrtcOutput
{
    /// <summary>A CUBIN for the exact architecture named by <c>--gpu-architecture=sm_XX</c>.</summary>
    Cubin,
    /// <summary>PTX text (NUL-terminated), for inspection.</summary>
    Ptx,
}

/// <summary>The outcome of one NVRTC compilation.</summary>
/// <param name="Succeeded">False when the source has errors; <paramref name="Log"/> says which.</param>
/// <param name="Log">NVRTC's log: warnings, and errors as <c>file(line): error: message</c>.</param>
/// <param name="Image">The CUBIN or PTX bytes; empty when compilation failed.</param>
public sealed record NvrtcResult(bool Succeeded, string Log, byte[] Image);
