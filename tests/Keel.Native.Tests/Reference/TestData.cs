namespace Keel.Native.Tests.Reference;

/// <summary>Seeded random inputs and NaN-poisoned outputs for the reference-op tests.</summary>
internal static class TestData
{
    /// <summary>Uniform values in [-scale, -scale/10] ∪ [scale/10, scale]: random signs, never zero.</summary>
    public static double[] Doubles(Random rng, int count, double scale = 1)
    {
        var values = new double[count];
        for (var i = 0; i < count; i++)
        {
            var magnitude = scale * (0.1 + 0.9 * rng.NextDouble());
            values[i] = rng.Next(2) == 0 ? magnitude : -magnitude;
        }
        return values;
    }

    /// <summary>Values in [center − spread, center + spread] (for gains near 1).</summary>
    public static double[] Around(Random rng, int count, double center, double spread)
    {
        var values = new double[count];
        for (var i = 0; i < count; i++) values[i] = center + spread * (2 * rng.NextDouble() - 1);
        return values;
    }

    public static float[] Floats(Random rng, int count, double scale = 1) => Array.ConvertAll(Doubles(rng, count, scale), v => (float)v);

    public static T[] Nans<T>(int count) where T : System.Numerics.IFloatingPointIeee754<T>
    {
        var values = new T[count];
        Array.Fill(values, T.NaN);
        return values;
    }

    public static double Dot(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        Assert.Equal(a.Length, b.Length);
        var sum = 0.0;
        for (var i = 0; i < a.Length; i++) sum += a[i] * b[i];
        return sum;
    }

    /// <summary>Asserts that <paramref name="action"/> throws an ArgumentException (or subclass) naming <paramref name="name"/>.</summary>
    public static void AssertParam(string name, Action action)
    {
        var e = Assert.ThrowsAny<ArgumentException>(action);
        Assert.Equal(name, e.ParamName);
    }

    /// <summary>Asserts every element is finite (outputs are poisoned with NaN first, so this catches unwritten ones).</summary>
    public static void AllFinite<T>(ReadOnlySpan<T> values, string name) where T : System.Numerics.IFloatingPointIeee754<T>
    {
        for (var i = 0; i < values.Length; i++)
            Assert.True(T.IsFinite(values[i]), $"{name}[{i}] = {values[i]} was not written or is not finite.");
    }

    /// <summary>|actual − expected| ≤ tolerance · max(|expected|, floor) elementwise.</summary>
    public static void Close(ReadOnlySpan<double> expected, ReadOnlySpan<double> actual, double tolerance, string name, double floor = 1e-12)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
        {
            var error = Math.Abs(actual[i] - expected[i]);
            Assert.True(error <= tolerance * Math.Max(Math.Abs(expected[i]), floor),
                        $"{name}[{i}]: expected {expected[i]:R}, got {actual[i]:R} (error {error:E2}).");
        }
    }
}

/// <summary>Gradient checks against central finite differences in fp64.</summary>
internal static class GradCheck
{
    /// <summary>
    /// Compares <paramref name="analytic"/> with (L(x + h e_i) − L(x − h e_i)) / 2h for every element i of
    /// <paramref name="input"/>, which <paramref name="loss"/> reads. The relative error of each element is taken
    /// against max(|numeric|, 1% of the largest numeric magnitude), so tiny entries are not judged by roundoff alone.
    /// </summary>
    public static void Check(string name, double[] input, ReadOnlySpan<double> analytic, Func<double> loss,
                             double h = 1e-6, double tolerance = 1e-6)
    {
        Assert.Equal(input.Length, analytic.Length);
        var numeric = new double[input.Length];
        for (var i = 0; i < input.Length; i++)
        {
            var saved = input[i];
            input[i] = saved + h;
            var plus = loss();
            input[i] = saved - h;
            var minus = loss();
            input[i] = saved;
            numeric[i] = (plus - minus) / (2 * h);
        }
        var largest = numeric.Max(Math.Abs);
        Assert.True(largest > 0, $"{name}: the numeric gradient is all zero, so the check would prove nothing.");
        TestData.Close(numeric, analytic, tolerance, "d" + name, floor: 0.01 * largest);
    }
}
