namespace Keel.Native.Tests.Support;

/// <summary>Moving test data to and from devices, and comparing results the way docs/testing.md asks.</summary>
internal static class DeviceData
{
    /// <summary>Normal(0, scale²) floats from a seeded generator: never zeros, different every call.</summary>
    public static float[] Random(Random rng, long count, double scale = 1)
    {
        var values = new float[count];
        for (var i = 0; i < values.Length; i++)
        {
            var u1 = 1 - rng.NextDouble();
            values[i] = (float)(scale * Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * rng.NextDouble()));
        }
        return values;
    }

    /// <summary>Allocates <paramref name="shape"/> as <paramref name="dtype"/> and fills it with <paramref name="values"/> (rounded for bf16).</summary>
    public static DeviceBuffer Upload(IDevice device, float[] values, DType dtype, TensorShape shape)
    {
        var buffer = device.Allocate(dtype, shape);
        switch (dtype)
        {
            case DType.Float32: device.CopyFromHost<float>(values, buffer); break;
            case DType.BFloat16: device.CopyFromHost<BFloat16>(Array.ConvertAll(values, BFloat16.FromSingle), buffer); break;
            case DType.Float64: device.CopyFromHost<double>(Array.ConvertAll(values, v => (double)v), buffer); break;
            default: throw new ArgumentOutOfRangeException(nameof(dtype));
        }
        return buffer;
    }

    /// <summary>An output buffer filled with NaN, so any element the op fails to write fails the comparison.</summary>
    public static DeviceBuffer Poisoned(IDevice device, DType dtype, TensorShape shape) =>
        Upload(device, Enumerable.Repeat(float.NaN, (int)shape.ElementCount).ToArray(), dtype, shape);

    /// <summary>The tensor's elements as floats.</summary>
    public static float[] Download(IDevice device, Tensor tensor)
    {
        switch (tensor.DType)
        {
            case DType.Float32:
                var f = new float[tensor.Length];
                device.CopyToHost<float>(tensor, f);
                return f;
            case DType.BFloat16:
                var b = new BFloat16[tensor.Length];
                device.CopyToHost<BFloat16>(tensor, b);
                return Array.ConvertAll(b, v => v.ToSingle());
            case DType.Float64:
                var d = new double[tensor.Length];
                device.CopyToHost<double>(tensor, d);
                return Array.ConvertAll(d, v => (float)v);
            default:
                throw new ArgumentOutOfRangeException(nameof(tensor));
        }
    }

    /// <summary>Asserts ‖actual − expected‖ / ‖expected‖ ≤ tolerance, and that no element is NaN or infinite.</summary>
    public static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, double tolerance, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double difference = 0, norm = 0;
        for (var i = 0; i < expected.Length; i++)
        {
            if (!float.IsFinite(actual[i])) Assert.Fail($"{what}: element {i} is {actual[i]} (expected {expected[i]}).");
            difference += ((double)actual[i] - expected[i]) * ((double)actual[i] - expected[i]);
            norm += (double)expected[i] * expected[i];
        }
        var relative = Math.Sqrt(difference) / Math.Max(Math.Sqrt(norm), 1e-30);
        Assert.True(relative <= tolerance, $"{what}: relative error {relative:E2} exceeds {tolerance:E1}.");
    }
}
