namespace Keel.Native.Tests.Reference;

public class GemmTests
{
    private const float Alpha = 0.75f, Beta = -0.5f;

    public static TheoryData<bool, bool, int, int, int> Shapes()
    {
        var data = new TheoryData<bool, bool, int, int, int>();
        (int M, int N, int K)[] shapes = [(1, 1, 1), (7, 33, 129), (129, 7, 33), (33, 129, 7), (129, 129, 129), (1, 129, 7), (129, 1, 33), (7, 7, 300), (40, 70, 1)];
        foreach (var transposeA in new[] { false, true })
        foreach (var transposeB in new[] { false, true })
        foreach (var (m, n, k) in shapes)
            data.Add(transposeA, transposeB, m, n, k);
        return data;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void FloatMatchesTheFp64ProductAndTheSequentialFmaChain(bool transposeA, bool transposeB, int m, int n, int k)
    {
        var rng = new Random(m * 10007 + n * 101 + k);
        float[] a = TestData.Floats(rng, m * k), b = TestData.Floats(rng, k * n), c0 = TestData.Floats(rng, m * n);
        var c = (float[])c0.Clone();

        Gemm.Multiply(transposeA, transposeB, m, n, k, Alpha, a, b, Beta, c);

        AssertNearFp64(transposeA, transposeB, m, n, k, Widen(a), Widen(b), Widen(c0), Beta, Widen(c));
        Assert.Equal(FmaChain(transposeA, transposeB, m, n, k, a, b, c0, Beta), c);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Bf16OperandsAccumulateInFp32AndRoundTheBf16OutputOnce(bool transposeA, bool transposeB, int m, int n, int k)
    {
        var rng = new Random(m * 7919 + n * 31 + k);
        BFloat16[] a = ToBf16(TestData.Floats(rng, m * k)), b = ToBf16(TestData.Floats(rng, k * n)), c0 = ToBf16(TestData.Floats(rng, m * n));
        var cFloat = ToFloat(c0);
        var cBf16 = (BFloat16[])c0.Clone();

        Gemm.Multiply(transposeA, transposeB, m, n, k, Alpha, a, b, Beta, cFloat);
        Gemm.Multiply(transposeA, transposeB, m, n, k, Alpha, a, b, Beta, cBf16);

        // bf16 values are exact in fp32 and their products exact, so fp32 accumulation is the only error.
        AssertNearFp64(transposeA, transposeB, m, n, k, Widen(a), Widen(b), Widen(c0), Beta, Widen(cFloat));
        Assert.Equal(FmaChain(transposeA, transposeB, m, n, k, ToFloat(a), ToFloat(b), ToFloat(c0), Beta), cFloat);
        Assert.Equal(ToBf16(cFloat), cBf16);
    }

    [Fact]
    public void BetaZeroWritesCWithoutReadingIt()
    {
        var rng = new Random(5);
        const int m = 33, n = 17, k = 9;
        float[] a = TestData.Floats(rng, m * k), b = TestData.Floats(rng, k * n);
        var c = TestData.Nans<float>(m * n);
        var bf16 = Enumerable.Repeat(BFloat16.FromSingle(float.NaN), m * n).ToArray();

        Gemm.Multiply(false, true, m, n, k, Alpha, a, b.AsSpan(), 0f, c);
        Gemm.Multiply(false, true, m, n, k, Alpha, ToBf16(a), ToBf16(b), 0f, bf16);

        AssertNearFp64(false, true, m, n, k, Widen(a), Widen(b), new double[m * n], 0, Widen(c));
        Assert.All(bf16, v => Assert.True(float.IsFinite(v.ToSingle())));
    }

    [Fact]
    public void EmptyInnerDimensionScalesC()
    {
        var c = new[] { 1f, -2f, 3f, 4f, 5f, -6f };
        Gemm.Multiply(false, false, 2, 3, 0, Alpha, ReadOnlySpan<float>.Empty, ReadOnlySpan<float>.Empty, Beta, c);
        Assert.Equal(new[] { -0.5f, 1f, -1.5f, -2f, -2.5f, 3f }, c);
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public void ResultDoesNotDependOnThreadCountOrKernel(bool transposeA, bool transposeB)
    {
        var rng = new Random(11);
        // Large enough for many tiles, several k-blocks and the parallel path.
        const int m = 203, n = 190, k = 530;
        float[] a = TestData.Floats(rng, m * k), b = TestData.Floats(rng, k * n), c0 = TestData.Floats(rng, m * n);
        var reference = (float[])c0.Clone();
        Gemm.Multiply(transposeA, transposeB, m, n, k, Alpha, a, b, Beta, reference);

        foreach (var (threads, portable) in new[] { (1, false), (2, false), (3, false), (1, true), (-1, true) })
        {
            var c = (float[])c0.Clone();
            Gemm.Multiply<float, float>(transposeA, transposeB, m, n, k, Alpha, a, b, Beta, c, threads, portable);
            Assert.Equal(reference, c);
        }
        Assert.Equal(FmaChain(transposeA, transposeB, m, n, k, a, b, c0, Beta), reference);
    }

    [Fact]
    public void NaiveGenericProductMatchesHandComputedValues()
    {
        // [[1, 2], [3, 4]] · [[5, 6], [7, 8]] = [[19, 22], [43, 50]]; alpha 2, beta 1 on C = 1.
        var c = new double[] { 1, 1, 1, 1 };
        Gemm.MultiplyNaive(false, false, 2, 2, 2, 2.0, [1, 2, 3, 4], [5, 6, 7, 8], 1.0, c);
        Assert.Equal(new double[] { 39, 45, 87, 101 }, c);

        // Transposed storage of the same operands gives the same product.
        var t = TestData.Nans<double>(4);
        Gemm.MultiplyNaive(true, true, 2, 2, 2, 1.0, [1, 3, 2, 4], [5, 7, 6, 8], 0.0, t);
        Assert.Equal(new double[] { 19, 22, 43, 50 }, t);
    }

    [Fact]
    public void BadShapesThrowNamingTheArgument()
    {
        var a = new float[6];
        var b = new float[12];
        var c = new float[8];
        TestData.AssertParam("m", () => Gemm.Multiply(false, false, -1, 4, 3, 1f, a, b, 0f, c));
        TestData.AssertParam("a", () => Gemm.Multiply(false, false, 2, 4, 3, 1f, a.AsSpan(1), b, 0f, c));
        TestData.AssertParam("b", () => Gemm.Multiply(false, false, 2, 4, 3, 1f, a, b.AsSpan(1), 0f, c));
        TestData.AssertParam("c", () => Gemm.Multiply(false, false, 2, 4, 3, 1f, a, b, 0f, c.AsSpan(1)));
        TestData.AssertParam("c", () => Gemm.MultiplyNaive(false, false, 2, 4, 3, 1.0, new double[6], new double[12], 0.0, new double[9]));
        TestData.AssertParam("a", () => Gemm.Multiply(false, false, 2, 4, 3, 1f, new BFloat16[5], new BFloat16[12], 0f, new BFloat16[8]));
        // C overlapping A would read values it has already overwritten.
        var shared = new float[8];
        TestData.AssertParam("c", () => Gemm.Multiply(false, false, 2, 2, 2, 1f, shared.AsSpan(0, 4), b.AsSpan(0, 4), 0f, shared.AsSpan(2, 4)));
    }

    /// <summary>|c − exact| ≤ 1e-5 · (|alpha| Σ_p |a||b| + |beta||c0|): fp32 accumulation error, relative to the sum's magnitude.</summary>
    private static void AssertNearFp64(bool transposeA, bool transposeB, int m, int n, int k, double[] a, double[] b, double[] c0, float beta, double[] actual)
    {
        var exact = (double[])c0.Clone();
        Gemm.MultiplyNaive(transposeA, transposeB, m, n, k, (double)Alpha, a, b, beta, exact);
        var bound = Array.ConvertAll(c0, Math.Abs);
        Gemm.MultiplyNaive(transposeA, transposeB, m, n, k, Math.Abs((double)Alpha), Array.ConvertAll(a, Math.Abs), Array.ConvertAll(b, Math.Abs), Math.Abs((double)beta), bound);
        for (var i = 0; i < exact.Length; i++)
            Assert.True(Math.Abs(actual[i] - exact[i]) <= 1e-5 * bound[i], $"c[{i}]: expected {exact[i]}, got {actual[i]}.");
    }

    /// <summary>The documented order: acc = fma(a, b, acc) over p from 0, then alpha·acc or fma(beta, c, alpha·acc).</summary>
    private static float[] FmaChain(bool transposeA, bool transposeB, int m, int n, int k, float[] a, float[] b, float[] c0, float beta)
    {
        var c = new float[m * n];
        for (var i = 0; i < m; i++)
        for (var j = 0; j < n; j++)
        {
            var acc = 0f;
            for (var p = 0; p < k; p++)
                acc = MathF.FusedMultiplyAdd(transposeA ? a[p * m + i] : a[i * k + p], transposeB ? b[j * k + p] : b[p * n + j], acc);
            var r = Alpha * acc;
            c[i * n + j] = beta == 0 ? r : MathF.FusedMultiplyAdd(beta, c0[i * n + j], r);
        }
        return c;
    }

    private static float[] ToFloat(BFloat16[] values) => Array.ConvertAll(values, v => v.ToSingle());

    private static double[] Widen(float[] values) => Array.ConvertAll(values, v => (double)v);

    private static double[] Widen(BFloat16[] values) => Array.ConvertAll(values, v => (double)v.ToSingle());

    private static BFloat16[] ToBf16(float[] values) => Array.ConvertAll(values, BFloat16.FromSingle);
}
