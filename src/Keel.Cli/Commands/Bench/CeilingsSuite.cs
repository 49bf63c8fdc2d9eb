namespace Keel.Cli.Commands.Bench;

/// <summary>
/// <c>keel bench ceilings</c>: the two numbers every other result is read against — a 1 GiB device-to-device
/// copy (bytes read plus written) and an 8192³ bf16 cuBLAS GEMM.
/// </summary>
internal sealed class CeilingsSuite : IBenchmarkSuite
{
    public string Name => "ceilings";

    public string Description => "device-to-device copy bandwidth and bf16 GEMM rate";

    public string? BaselineScript => null;

    public void Run(BenchContext context, BenchReport report)
    {
        var (copy, gemm) = context.Ceilings;
        const double CopyBytes = 2.0 * (1L << 30);
        const double GemmFlops = 2.0 * 8192 * 8192 * 8192;
        report.Add(new BenchResult("copy 1 GiB", "d2d", CopyBytes / (copy * 1e9) * 1e6, CopyBytes, 0));
        report.Add(new BenchResult("gemm 8192^3 bf16", "nt", GemmFlops / (gemm * 1e12) * 1e6, 0, GemmFlops));
    }
}
