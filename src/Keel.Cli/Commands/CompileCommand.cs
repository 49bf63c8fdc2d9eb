using CommandLine;
using Keel.Cli.Output;
using Keel.Native.Kernels;

namespace Keel.Cli.Commands;

[Verb("compile", HelpText = "Compile every kernel specialization with NVRTC for one GPU architecture and report each entry point's registers, local (spill) memory and static shared memory, read from the CUBIN. Needs no GPU.")]
internal sealed class CompileOptions
{
    [Option("arch", Default = "sm_90", HelpText = "Target architecture: sm_80 (A100), sm_90 (H100/H200), or any other NVRTC supports.")]
    public string Architecture { get; init; } = "sm_90";

    [Option("out", HelpText = "Also write each CUBIN to this folder (for cuobjdump / nvdisasm).")]
    public string? OutputFolder { get; init; }

    [Option("kernel", HelpText = "Only specializations whose file or defines contain this text.")]
    public string? Filter { get; init; }

    [Option("no-cache", Default = false, HelpText = "Recompile even when the kernel cache has the image (for timing the compiler).")]
    public bool NoCache { get; init; }
}

/// <summary><c>keel compile</c>: the kernels' resource usage, without a GPU.</summary>
internal static class CompileCommand
{
    public static int Run(CompileOptions options, TextWriter output, TextWriter error)
    {
        var specs = KernelCatalog.All.Where(s => options.Filter is null || s.Key.Contains(options.Filter, StringComparison.Ordinal)).ToList();
        if (specs.Count == 0)
        {
            error.WriteLine($"No kernel specialization matches '{options.Filter}'. Known: {string.Join(", ", KernelCatalog.All)}");
            return 1;
        }
        var cache = options.NoCache
            ? new KernelCache(Path.Combine(Path.GetTempPath(), "keel-compile-" + Guid.NewGuid().ToString("N")))
            : KernelCache.Default;
        var compiler = new NvrtcKernelCompiler(cache);
        compiler.ValidateArchitecture(options.Architecture);
        if (options.OutputFolder is not null) Directory.CreateDirectory(options.OutputFolder);

        output.WriteLine($"NVRTC {compiler.CompilerVersion}, {options.Architecture}, {specs.Count} specializations, cache {cache.Folder}");
        var table = new TextTable("specialization", "entry point", "regs", "local B", "shared B", "cubin B", "seconds")
            .AlignRight("regs", "local B", "shared B", "cubin B", "seconds");
        var failures = 0;
        try
        {
            foreach (var spec in specs)
            {
                CompiledKernel compiled;
                try
                {
                    compiled = compiler.Compile(spec, options.Architecture);
                }
                catch (KernelCompileException e)
                {
                    failures++;
                    error.WriteLine(e.Message);
                    error.WriteLine(e.Log);
                    continue;
                }
                if (options.OutputFolder is not null)
                    File.WriteAllBytes(Path.Combine(options.OutputFolder, CubinFileName(spec, options.Architecture)), compiled.Image);
                var first = true;
                foreach (var usage in CubinReader.Read(compiled.Image))
                {
                    table.Add(first ? spec.Key : "", usage.Name, usage.Registers, usage.LocalBytes, usage.StaticSharedBytes,
                        first ? compiled.Image.Length : null,
                        first ? (compiled.FromCache ? "cached" : compiled.CompileTime.TotalSeconds.ToString("0.00", System.Globalization.CultureInfo.InvariantCulture)) : null);
                    first = false;
                }
            }
        }
        finally
        {
            if (options.NoCache && Directory.Exists(cache.Folder)) Directory.Delete(cache.Folder, recursive: true);
        }
        table.Write(output);
        if (failures > 0)
        {
            error.WriteLine($"{failures} of {specs.Count} specializations failed to compile for {options.Architecture}.");
            return 1;
        }
        return 0;
    }

    private static string CubinFileName(KernelSpec spec, string arch)
    {
        var stem = Path.GetFileNameWithoutExtension(spec.File);
        var defines = string.Concat(spec.Defines.Select(d => $".{d.Key}-{d.Value}"));
        return $"{stem}{defines}.{arch}.cubin";
    }
}
