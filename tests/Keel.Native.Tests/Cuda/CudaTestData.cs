namespace Keel.Native.Tests.Cuda;

/// <summary>Random inputs, reference products and error measures for the GPU tests.</summary>
internal static class CudaTestData
{
    /// <summary>Uniform values in [-1, 1), never all zero.</summary>
    public static float[] RandomFloats(int count)
    {
        var values = new float[count];
        for (var i = 0; i < count; i++) values[i] = (float)(Random.Shared.NextDouble() * 2 - 1);
        return values;
    }

    /// <summary>Random values already rounded to bf16, so the device and the reference see the same inputs.</summary>
    public static float[] RandomBf16Values(int count)
    {
        var values = RandomFloats(count);
        for (var i = 0; i < count; i++) values[i] = BFloat16.Round(values[i]);
        return values;
    }

    /// <summary>The bf16 encoding of values that are already bf16-exact.</summary>
    public static BFloat16[] ToBf16(float[] values)
    {
        var result = new BFloat16[values.Length];
        BFloat16.Convert(values, result);
        return result;
    }

    /// <summary>Widens device bf16 output for comparison.</summary>
    public static float[] ToFloats(BFloat16[] values)
    {
        var result = new float[values.Length];
        BFloat16.Convert(values, result);
        return result;
    }

    /// <summary>An array of NaNs, for outputs that must be overwritten.</summary>
    public static T[] Poisoned<T>(int count, T nan)
    {
        var values = new T[count];
        Array.Fill(values, nan);
        return values;
    }

    /// <summary>
    /// Column-major <c>op(A) op(B)</c> in double: op(A) m x k, op(B) k x n, result m x n with leading dimension m.
    /// </summary>
    public static double[] Product(bool transA, bool transB, int m, int n, int k, ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb)
    {
        var c = new double[m * n];
        for (var j = 0; j < n; j++)
            for (var i = 0; i < m; i++)
            {
                var sum = 0.0;
                for (var p = 0; p < k; p++)
                {
                    var aip = transA ? a[p + i * lda] : a[i + p * lda];
                    var bpj = transB ? b[j + p * ldb] : b[p + j * ldb];
                    sum += (double)aip * bpj;
                }
                c[i + j * m] = sum;
            }
        return c;
    }

    /// <summary>The tanh form of GELU, in double.</summary>
    public static double Gelu(double x) => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));

    /// <summary>
    /// max |actual - expected| / max |expected|: relative to the scale of the result, so that entries near zero do not
    /// dominate. A NaN in <paramref name="actual"/> (an unwritten, poisoned element) makes it NaN.
    /// </summary>
    public static double RelativeError(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected)
    {
        Assert.Equal(expected.Length, actual.Length);
        double maxError = 0, maxExpected = 0;
        for (var i = 0; i < actual.Length; i++)
        {
            var error = Math.Abs(actual[i] - expected[i]);
            if (double.IsNaN(error)) return double.NaN;
            maxError = Math.Max(maxError, error);
            maxExpected = Math.Max(maxExpected, Math.Abs(expected[i]));
        }
        Assert.True(maxExpected > 0, "the reference is all zeros, so the comparison would prove nothing");
        return maxError / maxExpected;
    }
}
