using CommandLine;
using Keel.Cuda.Interop;
using Keel.Cuda.Nvrtc;

namespace Keel.Cli.Commands;

[Verb("info", HelpText = "Show the runtime, each CUDA library found (path and version, or why not), each GPU, and the architectures NVRTC can compile for.")]
internal sealed class InfoOptions
{
}

/// <summary><c>keel info</c>: what this machine offers Keel.</summary>
internal static class InfoCommand
{
    public static int Run(InfoOptions options, TextWriter output)
    {
        _ = options;
        output.WriteLine($"Runtime     .NET {Environment.Version} on {System.Runtime.InteropServices.RuntimeInformation.OSDescription} ({System.Runtime.InteropServices.RuntimeInformation.OSArchitecture}), {Environment.ProcessorCount} cores");
        output.WriteLine();
        output.WriteLine("CUDA libraries");
        foreach (var library in Enum.GetValues<CudaLibrary>())
        {
            if (CudaLibraries.TryLoad(library, out var path, out var error))
                output.WriteLine($"  {library,-9} {VersionOf(library)}  {path}");
            else
                output.WriteLine($"  {library,-9} not found; tried:{Environment.NewLine}{string.Join(Environment.NewLine, error!.Attempts.Select(a => "              " + a))}");
        }
        if (CudaLibraries.TryLoad(CudaLibrary.Nvrtc, out _, out _))
            output.WriteLine($"  NVRTC targets {string.Join(" ", NvrtcCompiler.SupportedArchitectures.Select(a => "sm_" + a))}");
        return 0;
    }

    private static string VersionOf(CudaLibrary library) => library switch
    {
        CudaLibrary.Nvrtc => NvrtcCompiler.Version.ToString(),
        _ => "",
    };
}
