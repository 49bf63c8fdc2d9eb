namespace Keel.Native.Tests.Reference;

public class OptimizerTests
{
    private const int Count = 64;
    private const float Lr = 1e-3f;

    [Fact]
    public void FirstStepMovesEachParameterByLearningRateTimesSign()
    {
        // m̂ = g', v̂ = g'², so the step is lr·g'/(|g'| + eps) = lr·sign(g) up to eps, plus lr·wd·p.
        var rng = new Random(1);
        double[] p0 = TestData.Doubles(rng, Count), g = TestData.Doubles(rng, Count), p = (double[])p0.Clone();
        double[] m = new double[Count], v = new double[Count];
        var options = new AdamWOptions(WeightDecay: 0.1f);
        AdamW.Step<double>(options, 1, Lr, 0.5f, p, g, m, v);
        for (var i = 0; i < Count; i++)
        {
            Assert.Equal(-Lr * (Math.Sign(g[i]) + 0.1f * p0[i]), p[i] - p0[i], 1e-9);
            Assert.Equal((1 - 0.9f) * 0.5 * g[i], m[i], 12);
            Assert.Equal((1 - 0.95f) * 0.25 * g[i] * g[i], v[i], 12);
        }
    }

    [Fact]
    public void BiasCorrectionKeepsAConstantGradientAtFullSteps()
    {
        // With the same gradient every step, m̂ = g and v̂ = g² exactly, so each step is lr·sign(g).
        var rng = new Random(2);
        float[] p0 = TestData.Floats(rng, Count), g = TestData.Floats(rng, Count), p = (float[])p0.Clone();
        float[] m = new float[Count], v = new float[Count];
        var options = new AdamWOptions(WeightDecay: 0);
        for (var step = 1; step <= 5; step++) AdamW.Step<float>(options, step, Lr, 1f, p, g, m, v);
        for (var i = 0; i < Count; i++) Assert.Equal(-5 * Lr * Math.Sign(g[i]), p[i] - p0[i], 1e-6);
    }

    [Fact]
    public void ZeroGradScaleOnlyDecaysAndTheBf16CopyIsTheRoundedParameter()
    {
        var rng = new Random(3);
        float[] p0 = TestData.Floats(rng, Count), g = TestData.Floats(rng, Count), p = (float[])p0.Clone();
        float[] m = new float[Count], v = new float[Count];
        var copy = Enumerable.Repeat(BFloat16.FromSingle(float.NaN), Count).ToArray();
        AdamW.Step<float>(new AdamWOptions(), 3, Lr, 0f, p, g, m, v, copy);
        for (var i = 0; i < Count; i++)
        {
            Assert.Equal((float)(p0[i] * (1 - (double)Lr * 0.01f)), p[i]);
            Assert.Equal(BFloat16.FromSingle(p[i]), copy[i]);
        }
    }

    [Fact]
    public void BadArgumentsThrowNamingTheArgument()
    {
        var options = new AdamWOptions();
        Assert.Equal((0.9f, 0.95f, 1e-8f, 0.01f), (options.Beta1, options.Beta2, options.Epsilon, options.WeightDecay));
        TestData.AssertParam("Beta1", () => _ = new AdamWOptions(Beta1: 1f));
        TestData.AssertParam("Beta2", () => _ = options with { Beta2 = -0.1f });
        TestData.AssertParam("Epsilon", () => _ = options with { Epsilon = 0 });
        TestData.AssertParam("WeightDecay", () => _ = new AdamWOptions(WeightDecay: float.NaN));
        float[] p = new float[4], g = new float[4], m = new float[4], v = new float[4];
        TestData.AssertParam("step", () => AdamW.Step<float>(options, 0, Lr, 1f, p, g, m, v));
        TestData.AssertParam("learningRate", () => AdamW.Step<float>(options, 1, -Lr, 1f, p, g, m, v));
        TestData.AssertParam("gradScale", () => AdamW.Step<float>(options, 1, Lr, float.NaN, p, g, m, v));
        TestData.AssertParam("v", () => AdamW.Step<float>(options, 1, Lr, 1f, p, g, m, new float[3]));
        TestData.AssertParam("parametersBf16", () => AdamW.Step<float>(options, 1, Lr, 1f, p, g, m, v, new BFloat16[3]));
    }

    [Fact]
    public void GlobalNormSumsSquaresOverAllTensorsInFp64()
    {
        float[] a = [3f, 4f], b = [12f], c = [];
        Assert.Equal(25, GradNorm.SumOfSquares<float>(a));
        Assert.Equal(13, GradNorm.GlobalNorm<float>(a, b, c));

        // fp64 accumulation: a million squares of 1e-3 sum to 1 with no fp32 drift.
        var small = Enumerable.Repeat(1e-3f, 1_000_000).ToArray();
        Assert.Equal(1e6 * (double)1e-3f * 1e-3f, GradNorm.SumOfSquares<float>(small), 9);

        Assert.Equal(1, GradNorm.ClipFactor(0.5, 1));
        Assert.Equal(1 / (13 + 1e-6), GradNorm.ClipFactor(13, 1));
        Assert.Equal(0, GradNorm.ClipFactor(double.PositiveInfinity, 1));
        Assert.True(double.IsNaN(GradNorm.ClipFactor(double.NaN, 1)));
        TestData.AssertParam("norm", () => GradNorm.ClipFactor(-1, 1));
        TestData.AssertParam("maxNorm", () => GradNorm.ClipFactor(1, 0));
    }
}
