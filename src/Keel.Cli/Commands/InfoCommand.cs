using CommandLine;
using Keel.Cuda;
using Keel.Cuda.Cublas;
using Keel.Cuda.CublasLt;
using Keel.Cuda.Driver;
using Keel.Cuda.Interop;
using Keel.Cuda.Nccl;
using Keel.Distributed.Mpi;
using Keel.Cuda.Nvrtc;

namespace Keel.Cli.Commands;

[Verb("info", HelpText = "Show the runtime, each CUDA library found (path and version, or why not; the versions the driver allows and what was passed over), MPI, each GPU, and the architectures NVRTC can compile for.")]
internal sealed class InfoOptions
{
}

/// <summary><c>keel info</c>: what this machine offers Keel.</summary>
internal static class InfoCommand
{
    public static int Run(InfoOptions options, TextWriter output)
    {
        _ = options;
        output.WriteLine($"Runtime   .NET {Environment.Version} on {System.Runtime.InteropServices.RuntimeInformation.OSDescription} " +
                         $"({System.Runtime.InteropServices.RuntimeInformation.OSArchitecture}), {Environment.ProcessorCount} cores");
        output.WriteLine();
        // The driver's CUDA version decides which versions of the other libraries can be used.
        output.WriteLine("CUDA libraries");
        output.WriteLine($"  versions: {CudaLibraries.DriverSupport.Basis}");
        foreach (var library in Enum.GetValues<CudaLibrary>())
        {
            var choice = CudaLibraries.Choice(library);
            if (choice.Path is { } path)
                output.WriteLine($"  {library,-9} {VersionOf(library),-10} {path}");
            else
                output.WriteLine($"  {library,-9} not found; tried:{Environment.NewLine}{string.Join(Environment.NewLine, choice.Error!.Attempts.Select(a => "              " + a))}");
            if (choice.Path is not null)
                foreach (var skipped in choice.Skipped) output.WriteLine($"            passed over {skipped}");
        }
        if (CudaLibraries.TryLoad(CudaLibrary.Nvrtc, out _, out _))
            output.WriteLine($"  NVRTC targets {string.Join(" ", NvrtcCompiler.SupportedArchitectures.Select(a => "sm_" + a))}");

        output.WriteLine();
        output.WriteLine(MpiLibrary.TryLoad(out var mpi)
            ? $"MPI       {mpi} (several ranks: mpirun -np N keel train ...)"
            : $"MPI       not found (needed only to train on several ranks); {mpi.Split(Environment.NewLine)[0]}");
        output.WriteLine();
        output.WriteLine("GPUs");
        foreach (var line in GpuLines()) output.WriteLine("  " + line);
        return 0;
    }

    private static IEnumerable<string> GpuLines()
    {
        if (!CudaLibraries.TryLoad(CudaLibrary.Driver, out _, out _))
        {
            yield return "none: no CUDA driver (the CPU and emulated devices work without one)";
            yield break;
        }
        int count;
        string? failure = null;
        try
        {
            CudaDriver.Initialize();
            count = CudaDriver.DeviceCount;
        }
        catch (CudaException e)
        {
            count = 0;
            failure = e.Message;
        }
        if (count == 0) yield return "none: " + (failure ?? "the driver reports no device");
        for (var i = 0; i < count; i++)
        {
            var gpu = CudaDeviceInfo.Query(i);
            yield return $"{i}: {gpu.Name}, {gpu.Architecture}, {gpu.MultiprocessorCount} SMs, {gpu.TotalGlobalMemoryBytes / (1L << 20)} MiB, " +
                         $"L2 {gpu.L2CacheBytes >> 20} MiB, shared {gpu.MaxSharedMemoryPerBlockOptInBytes >> 10} KiB/block";
        }
    }

    private static string VersionOf(CudaLibrary library)
    {
        try
        {
            return library switch
            {
                CudaLibrary.Driver => CudaDriver.Version.ToString(),
                CudaLibrary.Nvrtc => NvrtcCompiler.Version.ToString(),
                CudaLibrary.Cublas => CublasHandle.LibraryVersion.ToString(),
                // cublasLtGetVersion encodes major·10000 + minor·100 + patch.
                CudaLibrary.CublasLt => $"{CublasLtHandle.VersionNumber / 10000}.{CublasLtHandle.VersionNumber / 100 % 100}.{CublasLtHandle.VersionNumber % 100}",
                CudaLibrary.Nccl => NcclCommunicator.Version.ToString(),
                _ => "",
            };
        }
        catch (CudaException e)
        {
            return $"(version query failed: {e.ErrorName})";
        }
    }
}
