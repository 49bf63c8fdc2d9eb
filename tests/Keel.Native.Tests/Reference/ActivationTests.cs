namespace Keel.Native.Tests.Reference;

public class ActivationTests
{
    private const int Rows = 3, Ffn = 5;

    [Fact]
    public void SwiGluBackwardMatchesFiniteDifferences()
    {
        var rng = new Random(1);
        double[] gateUp = TestData.Doubles(rng, Rows * 2 * Ffn, scale: 3), w = TestData.Doubles(rng, Rows * Ffn);
        var dGateUp = TestData.Nans<double>(gateUp.Length);
        SwiGlu.Backward<double>(Rows, Ffn, gateUp, w, dGateUp);
        GradCheck.Check("gateUp", gateUp, dGateUp, () =>
        {
            var h = new double[Rows * Ffn];
            SwiGlu.Forward<double>(Rows, Ffn, gateUp, h);
            return TestData.Dot(h, w);
        });
    }

    [Fact]
    public void SwiGluIsSiluOfTheGateTimesUp()
    {
        // Row 0: gate 0 gives 0 whatever up is; large gates pass up·gate, very negative ones give ~0.
        var gateUp = new float[] { 0f, 20f, -20f, 1f, 7f, 0.5f, 3f, 2f };
        var h = TestData.Nans<float>(4);
        SwiGlu.Forward<float>(1, 4, gateUp, h);
        Assert.Equal(0f, h[0]);
        Assert.Equal(20f * 0.5f, h[1], 1e-5f);
        Assert.Equal(-20f * 3f * (float)(1 / (1 + Math.Exp(20))), h[2], 1e-10f);
        Assert.Equal((float)(1 / (1 + Math.Exp(-1)) * 2), h[3], 1e-6f);
    }

    [Fact]
    public void GeluBackwardMatchesFiniteDifferences()
    {
        var rng = new Random(2);
        double[] x = TestData.Doubles(rng, 40, scale: 4), w = TestData.Doubles(rng, 40), dx = TestData.Nans<double>(40);
        Gelu.Backward<double>(x, w, dx);
        GradCheck.Check("x", x, dx, () =>
        {
            var y = new double[x.Length];
            Gelu.Forward<double>(x, y);
            return TestData.Dot(y, w);
        });
    }

    [Fact]
    public void GeluMatchesKnownValuesAndRunsInPlace()
    {
        // Tanh-approximation values: GELU(1) = 0.5(1 + tanh(sqrt(2/π)·1.044715)); odd part x/2; tails x and 0.
        var x = new double[] { 1, -1, 10, -10 };
        var y = TestData.Nans<double>(4);
        Gelu.Forward<double>(x, y);
        var g1 = 0.5 * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * 1.044715));
        Assert.Equal(g1, y[0], 15);
        Assert.Equal(y[0] - 1, y[1], 15); // GELU(x) − GELU(−x) = x
        Assert.Equal(10, y[2], 12);
        Assert.Equal(0, y[3], 12);

        var rng = new Random(3);
        var values = TestData.Floats(rng, 16);
        var expected = TestData.Nans<float>(16);
        Gelu.Forward<float>(values, expected);
        Gelu.Forward<float>(values, values);
        Assert.Equal(expected, values);
    }

    [Fact]
    public void BadArgumentsThrowNamingTheArgument()
    {
        TestData.AssertParam("gateUp", () => SwiGlu.Forward<float>(Rows, Ffn, new float[Rows * Ffn], new float[Rows * Ffn]));
        TestData.AssertParam("h", () => SwiGlu.Forward<float>(Rows, Ffn, new float[Rows * 2 * Ffn], new float[Rows * 2 * Ffn]));
        TestData.AssertParam("dGateUp", () => SwiGlu.Backward<float>(Rows, Ffn, new float[Rows * 2 * Ffn], new float[Rows * Ffn], new float[Rows * Ffn]));
        TestData.AssertParam("ffn", () => SwiGlu.Forward<float>(Rows, 0, [], []));
        TestData.AssertParam("y", () => Gelu.Forward<float>(new float[4], new float[5]));
        TestData.AssertParam("dy", () => Gelu.Backward<float>(new float[4], new float[3], new float[4]));
        var x = new float[4];
        TestData.AssertParam("dx", () => Gelu.Backward<float>(x, new float[4], x));
    }
}
