namespace Keel.Native.Tests.Reference;

public class ResidualNormTests
{
    private const int Rows = 3, Hidden = 8, SubLayers = 24;

    /// <summary>The variants the op must express (see ResidualNorm's documentation), by name.</summary>
    private static (ResidualNormOptions Options, bool HasF) Variant(string name, NormKind kind) => name switch
    {
        "KeelGeneral" => (new(kind, SubLayers, OutputNorm: true, InputNorm: true), true),
        "KeelFirstAttention" => (new(kind, 1f, OutputNorm: false, InputNorm: true), true),
        "KeelFirstFfn" => (new(kind, 1f, OutputNorm: true, InputNorm: true), true),
        "KeelLast" => (new(kind, SubLayers, OutputNorm: true, InputNorm: false), true),
        "PreLn" => (new(kind, 1f, OutputNorm: false, InputNorm: true), true),
        "PostLn" => (new(kind, 1f, OutputNorm: true, InputNorm: false), true),
        "DeepNorm" => (new(kind, MathF.Pow(SubLayers, 0.25f), OutputNorm: true, InputNorm: false), true),
        "StandaloneNorm" => (new(kind, 1f, OutputNorm: false, InputNorm: true), false),
        _ => throw new ArgumentOutOfRangeException(nameof(name)),
    };

    public static TheoryData<string, NormKind, bool> Variants()
    {
        var data = new TheoryData<string, NormKind, bool>();
        foreach (var name in new[] { "KeelGeneral", "KeelFirstAttention", "KeelFirstFfn", "KeelLast", "PreLn", "PostLn", "DeepNorm", "StandaloneNorm" })
        foreach (var kind in new[] { NormKind.Rms, NormKind.Layer })
        foreach (var withDy in new[] { true, false })
        {
            // Without dy and without z nothing depends on the inputs.
            if (withDy || Variant(name, kind).Options.InputNorm) data.Add(name, kind, withDy);
        }
        return data;
    }

    /// <summary>All tensors of one fp64 case, with L = Σ y ⊙ Wy (when withDy) + Σ z ⊙ Wz (with InputNorm).</summary>
    private sealed class Case
    {
        public readonly ResidualNormOptions Options;
        public readonly bool WithDy;
        public readonly double[] X, F, GainOut, BiasOut, GainIn, BiasIn, Wy, Wz;
        public double[] Y = [], Z = [], MeanOut = [], RstdOut = [], MeanIn = [], RstdIn = [];

        public Case(ResidualNormOptions options, bool hasF, bool withDy, int seed)
        {
            var rng = new Random(seed);
            bool layer = options.Kind == NormKind.Layer;
            (Options, WithDy) = (options, withDy);
            X = TestData.Doubles(rng, Rows * Hidden);
            F = hasF ? TestData.Doubles(rng, Rows * Hidden) : [];
            GainOut = options.OutputNorm ? TestData.Around(rng, Hidden, 1, 0.3) : [];
            BiasOut = options.OutputNorm && layer ? TestData.Doubles(rng, Hidden, 0.3) : [];
            GainIn = options.InputNorm ? TestData.Around(rng, Hidden, 1, 0.3) : [];
            BiasIn = options.InputNorm && layer ? TestData.Doubles(rng, Hidden, 0.3) : [];
            Wy = withDy ? TestData.Doubles(rng, Rows * Hidden) : [];
            Wz = options.InputNorm ? TestData.Doubles(rng, Rows * Hidden) : [];
        }

        private bool Layer => Options.Kind == NormKind.Layer;

        public void Forward()
        {
            Y = TestData.Nans<double>(Rows * Hidden);
            Z = Options.InputNorm ? TestData.Nans<double>(Rows * Hidden) : [];
            MeanOut = Options.OutputNorm && Layer ? TestData.Nans<double>(Rows) : [];
            RstdOut = Options.OutputNorm ? TestData.Nans<double>(Rows) : [];
            MeanIn = Options.InputNorm && Layer ? TestData.Nans<double>(Rows) : [];
            RstdIn = Options.InputNorm ? TestData.Nans<double>(Rows) : [];
            ResidualNorm.Forward<double>(Options, Rows, Hidden, X, F, GainOut, BiasOut, GainIn, BiasIn, Y, Z, MeanOut, RstdOut, MeanIn, RstdIn);
        }

        public double Loss()
        {
            Forward();
            return (WithDy ? TestData.Dot(Y, Wy) : 0) + (Options.InputNorm ? TestData.Dot(Z, Wz) : 0);
        }
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void BackwardMatchesFiniteDifferences(string variant, NormKind kind, bool withDy)
    {
        var (options, hasF) = Variant(variant, kind);
        var c = new Case(options, hasF, withDy, seed: variant.Length * 31 + (int)kind * 7 + (withDy ? 1 : 0));
        c.Forward();
        foreach (var saved in new[] { c.Y, c.Z, c.MeanOut, c.RstdOut, c.MeanIn, c.RstdIn }) TestData.AllFinite<double>(saved, "forward output");

        var rng = new Random(99);
        double[] dx = TestData.Nans<double>(Rows * Hidden), df = hasF ? TestData.Nans<double>(Rows * Hidden) : [];
        // Parameter gradients accumulate: start them from random values and check the increment.
        double[] dGainOut0 = TestData.Doubles(rng, c.GainOut.Length), dBiasOut0 = TestData.Doubles(rng, c.BiasOut.Length);
        double[] dGainIn0 = TestData.Doubles(rng, c.GainIn.Length), dBiasIn0 = TestData.Doubles(rng, c.BiasIn.Length);
        double[] dGainOut = (double[])dGainOut0.Clone(), dBiasOut = (double[])dBiasOut0.Clone();
        double[] dGainIn = (double[])dGainIn0.Clone(), dBiasIn = (double[])dBiasIn0.Clone();

        ResidualNorm.Backward<double>(options, Rows, Hidden, c.X, c.F, c.Y, c.GainOut, c.GainIn, c.MeanOut, c.RstdOut, c.MeanIn, c.RstdIn,
                                      c.Wy, c.Wz, dx, df, dGainOut, dBiasOut, dGainIn, dBiasIn);

        GradCheck.Check("x", c.X, dx, c.Loss);
        if (hasF) GradCheck.Check("f", c.F, df, c.Loss);
        if (options.OutputNorm) GradCheck.Check("gainOut", c.GainOut, Minus(dGainOut, dGainOut0), c.Loss);
        if (options.InputNorm) GradCheck.Check("gainIn", c.GainIn, Minus(dGainIn, dGainIn0), c.Loss);
        if (c.BiasOut.Length > 0) GradCheck.Check("biasOut", c.BiasOut, Minus(dBiasOut, dBiasOut0), c.Loss);
        if (c.BiasIn.Length > 0) GradCheck.Check("biasIn", c.BiasIn, Minus(dBiasIn, dBiasIn0), c.Loss);
    }

    [Theory]
    [InlineData(NormKind.Rms)]
    [InlineData(NormKind.Layer)]
    public void NormalizedRowsHaveUnitScaleBeforeTheGain(NormKind kind)
    {
        const float eps = 1e-2f; // large, so that the closed form's eps term is visible
        var options = new ResidualNormOptions(kind, 3f, OutputNorm: true, InputNorm: false, eps);
        var rng = new Random(3);
        float[] x = TestData.Floats(rng, Rows * Hidden), f = TestData.Floats(rng, Rows * Hidden), gain = Enumerable.Repeat(1f, Hidden).ToArray();
        float[] bias = kind == NormKind.Layer ? new float[Hidden] : [];
        float[] y = TestData.Nans<float>(Rows * Hidden), mean = kind == NormKind.Layer ? TestData.Nans<float>(Rows) : [], rstd = TestData.Nans<float>(Rows);

        ResidualNorm.Forward<float>(options, Rows, Hidden, x, f, gain, bias, [], [], y, [], mean, rstd, [], []);

        for (var r = 0; r < Rows; r++)
        {
            var s = Enumerable.Range(0, Hidden).Select(j => 3.0 * x[r * Hidden + j] + f[r * Hidden + j]).ToArray();
            var row = y.AsSpan(r * Hidden, Hidden).ToArray().Select(v => (double)v).ToArray();
            if (kind == NormKind.Rms)
            {
                // RMS(y) = sqrt(ms / (ms + eps)) with ms = mean(s²).
                var ms = s.Average(v => v * v);
                Assert.Equal(Math.Sqrt(ms / (ms + eps)), Math.Sqrt(row.Average(v => v * v)), 5);
                Assert.Equal(1 / Math.Sqrt(ms + eps), rstd[r], 5);
            }
            else
            {
                // mean(y) = 0 and var(y) = var / (var + eps).
                double mu = s.Average(), variance = s.Average(v => (v - mu) * (v - mu));
                Assert.Equal(0, row.Average(), 6);
                Assert.Equal(variance / (variance + eps), row.Average(v => v * v), 5);
                Assert.Equal(mu, mean[r], 5);
                Assert.Equal(1 / Math.Sqrt(variance + eps), rstd[r], 5);
            }
        }
    }

    [Fact]
    public void WithoutOutputNormYIsTheScaledSumAndZIsItsNorm()
    {
        var options = new ResidualNormOptions(NormKind.Rms, 16f, OutputNorm: false, InputNorm: true);
        var rng = new Random(4);
        float[] x = TestData.Floats(rng, Rows * Hidden), f = TestData.Floats(rng, Rows * Hidden), gain = TestData.Floats(rng, Hidden);
        float[] y = TestData.Nans<float>(Rows * Hidden), z = TestData.Nans<float>(Rows * Hidden), rstd = TestData.Nans<float>(Rows);

        ResidualNorm.Forward<float>(options, Rows, Hidden, x, f, [], [], gain, [], y, z, [], [], [], rstd);

        for (var i = 0; i < y.Length; i++) Assert.Equal((float)(16.0 * x[i] + f[i]), y[i]);
        for (var i = 0; i < z.Length; i++) Assert.Equal(gain[i % Hidden] * y[i] * rstd[i / Hidden], z[i], 1e-5f);
    }

    [Fact]
    public void OptionsAreValidatedIncludingWith()
    {
        TestData.AssertParam("Alpha", () => _ = new ResidualNormOptions(NormKind.Rms, 0f, true, true));
        TestData.AssertParam("Alpha", () => _ = new ResidualNormOptions(NormKind.Rms, float.NaN, true, true));
        TestData.AssertParam("Epsilon", () => _ = new ResidualNormOptions(NormKind.Rms, 1f, true, true, -1e-5f));
        TestData.AssertParam("Kind", () => _ = new ResidualNormOptions((NormKind)7, 1f, true, true));
        var valid = new ResidualNormOptions(NormKind.Layer, 2f, true, false);
        TestData.AssertParam("Epsilon", () => _ = valid with { Epsilon = 0 });
        TestData.AssertParam("Alpha", () => _ = valid with { Alpha = float.PositiveInfinity });
        Assert.Equal(1e-5f, valid.Epsilon);
    }

    [Fact]
    public void BadShapesThrowNamingTheArgument()
    {
        var keel = new ResidualNormOptions(NormKind.Rms, 4f, true, true);
        var n = Rows * Hidden;
        TestData.AssertParam("hidden", () => ResidualNorm.Forward<float>(keel, Rows, 0, new float[n], [], new float[Hidden], [], new float[Hidden], [], new float[n], new float[n], [], new float[Rows], [], new float[Rows]));
        TestData.AssertParam("x", () => ResidualNorm.Forward<float>(keel, Rows, Hidden, new float[n - 1], [], new float[Hidden], [], new float[Hidden], [], new float[n], new float[n], [], new float[Rows], [], new float[Rows]));
        TestData.AssertParam("f", () => ResidualNorm.Forward<float>(keel, Rows, Hidden, new float[n], new float[3], new float[Hidden], [], new float[Hidden], [], new float[n], new float[n], [], new float[Rows], [], new float[Rows]));
        TestData.AssertParam("biasOut", () => ResidualNorm.Forward<float>(keel, Rows, Hidden, new float[n], [], new float[Hidden], new float[Hidden], new float[Hidden], [], new float[n], new float[n], [], new float[Rows], [], new float[Rows]));
        TestData.AssertParam("meanOut", () => ResidualNorm.Forward<float>(keel, Rows, Hidden, new float[n], [], new float[Hidden], [], new float[Hidden], [], new float[n], new float[n], new float[Rows], new float[Rows], [], new float[Rows]));
        TestData.AssertParam("z", () => ResidualNorm.Forward<float>(keel with { InputNorm = false }, Rows, Hidden, new float[n], [], new float[Hidden], [], [], [], new float[n], new float[n], [], new float[Rows], [], []));
        TestData.AssertParam("gainIn", () => ResidualNorm.Forward<float>(keel, Rows, Hidden, new float[n], [], new float[Hidden], [], [], [], new float[n], new float[n], [], new float[Rows], [], new float[Rows]));
        TestData.AssertParam("dz", () => ResidualNorm.Backward<float>(keel, Rows, Hidden, new float[n], [], new float[n], new float[Hidden], new float[Hidden], [], new float[Rows], [], new float[Rows],
                                                                         [], [], new float[n], [], new float[Hidden], [], new float[Hidden], []));
        TestData.AssertParam("df", () => ResidualNorm.Backward<float>(keel, Rows, Hidden, new float[n], [], new float[n], new float[Hidden], new float[Hidden], [], new float[Rows], [], new float[Rows],
                                                                         [], new float[n], new float[n], new float[n], new float[Hidden], [], new float[Hidden], []));
        TestData.AssertParam("dBiasIn", () => ResidualNorm.Backward<float>(keel with { Kind = NormKind.Layer }, Rows, Hidden, new float[n], [], new float[n], new float[Hidden], new float[Hidden], new float[Rows], new float[Rows], new float[Rows], new float[Rows],
                                                                              [], new float[n], new float[n], [], new float[Hidden], new float[Hidden], new float[Hidden], []));
    }

    private static double[] Minus(double[] a, double[] b) => a.Select((v, i) => v - b[i]).ToArray();
}
