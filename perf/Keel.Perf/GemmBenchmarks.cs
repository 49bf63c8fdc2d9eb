using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using Keel.Native.Numerics;
using Keel.Native.Reference;

namespace Keel.Perf;

/// <summary>One GEMM problem: C[m,n] = op(A)·op(B) + beta·C, named for the report.</summary>
public sealed record GemmShape(string Name, bool TransposeA, bool TransposeB, int M, int N, int K, float Beta = 0)
{
    /// <summary>2·m·n·k: one multiply and one add per term.</summary>
    public double Flops => 2.0 * M * N * K;

    /// <inheritdoc />
    public override string ToString() => Name;
}

/// <summary>The blocked GEMM against a naive triple loop on square problems.</summary>
[Config(typeof(GemmConfig))]
public class GemmSquareBenchmarks
{
    private float[] _a = [], _b = [], _c = [];

    /// <summary>Square NN problems.</summary>
    public static IEnumerable<GemmShape> Shapes() =>
        new[] { 256, 512, 1024 }.Select(s => new GemmShape($"{s}^3 NN", false, false, s, s, s));

    /// <summary>The problem measured.</summary>
    [ParamsSource(nameof(Shapes))]
    public GemmShape Shape { get; set; } = null!;

    /// <summary>Random operands.</summary>
    [GlobalSetup]
    public void Setup() => (_a, _b, _c) = GemmData.Floats(Shape);

    /// <summary>i-j-p loops, fp32 dot products: the baseline.</summary>
    [Benchmark(Baseline = true)]
    public void Naive()
    {
        int m = Shape.M, n = Shape.N, k = Shape.K;
        float[] a = _a, b = _b, c = _c;
        for (var i = 0; i < m; i++)
        for (var j = 0; j < n; j++)
        {
            var sum = 0f;
            for (var p = 0; p < k; p++) sum += a[i * k + p] * b[p * n + j];
            c[i * n + j] = sum;
        }
    }

    /// <summary><see cref="Gemm"/>'s blocked, vectorized, parallel fp32 path.</summary>
    [Benchmark]
    public void Blocked() => Gemm.Multiply(Shape.TransposeA, Shape.TransposeB, Shape.M, Shape.N, Shape.K, 1f, _a, _b, Shape.Beta, _c);
}

/// <summary>
/// The three GEMMs of a linear layer in training (tokens 2048, in 1024, out 3072, W stored [out, in]):
/// Y = X·W^T (NT), dX = dY·W (NN), dW += dY^T·X (TN, beta 1); fp32 and bf16 operands.
/// </summary>
[Config(typeof(GemmConfig))]
public class GemmLinearBenchmarks
{
    private const int Tokens = 2048, In = 1024, Out = 3072;
    private float[] _a = [], _b = [], _c = [];
    private BFloat16[] _a16 = [], _b16 = [];

    /// <summary>Forward, input gradient and weight gradient.</summary>
    public static IEnumerable<GemmShape> Shapes() =>
    [
        new("Y=X·W^T NT", false, true, Tokens, Out, In),
        new("dX=dY·W NN", false, false, Tokens, In, Out),
        new("dW+=dY^T·X TN", true, false, Out, In, Tokens, Beta: 1),
    ];

    /// <summary>The problem measured.</summary>
    [ParamsSource(nameof(Shapes))]
    public GemmShape Shape { get; set; } = null!;

    /// <summary>Random operands, in fp32 and bf16.</summary>
    [GlobalSetup]
    public void Setup()
    {
        (_a, _b, _c) = GemmData.Floats(Shape);
        _a16 = Array.ConvertAll(_a, BFloat16.FromSingle);
        _b16 = Array.ConvertAll(_b, BFloat16.FromSingle);
    }

    /// <summary>fp32 operands.</summary>
    [Benchmark(Baseline = true)]
    public void Float() => Gemm.Multiply(Shape.TransposeA, Shape.TransposeB, Shape.M, Shape.N, Shape.K, 1f, _a, _b, Shape.Beta, _c);

    /// <summary>bf16 operands, fp32 accumulation and output.</summary>
    [Benchmark]
    public void Bf16() => Gemm.Multiply(Shape.TransposeA, Shape.TransposeB, Shape.M, Shape.N, Shape.K, 1f, _a16, _b16, Shape.Beta, _c);
}

internal static class GemmData
{
    public static (float[] A, float[] B, float[] C) Floats(GemmShape shape)
    {
        var rng = new Random(42);
        float[] Make(int count) => Enumerable.Range(0, count).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        return (Make(shape.M * shape.K), Make(shape.K * shape.N), Make(shape.M * shape.N));
    }
}

/// <summary>Adds the GFLOP/s column.</summary>
public sealed class GemmConfig : ManualConfig
{
    /// <summary>The default config plus <see cref="GflopsColumn"/>.</summary>
    public GemmConfig() => AddColumn(new GflopsColumn());
}

/// <summary>Throughput of a benchmark whose <c>Shape</c> parameter is a <see cref="GemmShape"/>: 2·m·n·k / mean time.</summary>
public sealed class GflopsColumn : IColumn
{
    /// <inheritdoc />
    public string Id => nameof(GflopsColumn);

    /// <inheritdoc />
    public string ColumnName => "GFLOP/s";

    /// <inheritdoc />
    public bool AlwaysShow => true;

    /// <inheritdoc />
    public ColumnCategory Category => ColumnCategory.Custom;

    /// <inheritdoc />
    public int PriorityInCategory => 0;

    /// <inheritdoc />
    public bool IsNumeric => true;

    /// <inheritdoc />
    public UnitType UnitType => UnitType.Dimensionless;

    /// <inheritdoc />
    public string Legend => "2·m·n·k divided by the mean time, in 10^9 floating-point operations per second";

    /// <inheritdoc />
    public bool IsAvailable(Summary summary) => true;

    /// <inheritdoc />
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    /// <inheritdoc />
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, summary.Style);

    /// <inheritdoc />
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var meanNs = summary[benchmarkCase]?.ResultStatistics?.Mean;
        if (meanNs is not > 0 || benchmarkCase.Parameters["Shape"] is not GemmShape shape) return "NA";
        return (shape.Flops / meanNs.Value).ToString("F1", System.Globalization.CultureInfo.InvariantCulture);
    }
}
