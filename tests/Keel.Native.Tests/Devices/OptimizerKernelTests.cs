namespace Keel.Native.Tests.Devices;

/// <summary>kernels/optimizer.cu (global norm, clip factor, fused AdamW) against the CPU reference device.</summary>
public class OptimizerKernelTests
{
    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void GradientNormAndClipFactorMatchTheReference(DeviceKind kind)
    {
        var device = TestDevices.Get(kind);
        foreach (var (n, maxNorm) in new[] { (1, 1f), (13, 0.5f), (1_000_003, 1f), (4096, 0f), (70_001, 1e6f) })
        {
            var gradients = DeviceData.Random(new Random(n), n, scale: 0.01);
            var expected = Run(TestDevices.Reference, gradients, maxNorm);
            var actual = Run(device, gradients, maxNorm);
            DeviceData.AssertClose(expected, actual, 1e-5, $"norm and clip of {n} gradients, max norm {maxNorm}");
        }
    }

    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void GradientNormIsDeterministic(DeviceKind kind)
    {
        var device = TestDevices.Get(kind);
        var gradients = DeviceData.Random(new Random(5), 300_007);
        Assert.Equal(Run(device, gradients, 1f), Run(device, gradients, 1f));
    }

    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void AdamWStepMatchesTheReferenceIncludingTheBFloat16Copy(DeviceKind kind)
    {
        var device = TestDevices.Get(kind);
        var options = new AdamWOptions(Beta1: 0.9f, Beta2: 0.95f, Epsilon: 1e-8f, WeightDecay: 0.01f);
        foreach (var n in new[] { 1, 5, 4096, 65_537 })
        {
            var rng = new Random(n);
            var state = new[] { DeviceData.Random(rng, n, 0.02), DeviceData.Random(rng, n, 0.1), DeviceData.Random(rng, n, 0.01), DeviceData.Random(rng, n, 0.001) };
            state[3] = Array.ConvertAll(state[3], Math.Abs); // second moments are non-negative
            var clip = new[] { 3f, 0.25f };
            var expected = Step(TestDevices.Reference, options, state, clip, step: 7);
            var actual = Step(device, options, state, clip, step: 7);
            string[] names = ["parameters", "first moment", "second moment", "bf16 parameters"];
            for (var i = 0; i < expected.Length; i++)
                DeviceData.AssertClose(expected[i], actual[i], i == 3 ? 1e-2 : 1e-5, $"{names[i]} after AdamW of {n}");
        }
    }

    [Theory]
    [InlineData(DeviceKind.Cpu)]
    [InlineData(DeviceKind.Emulated)]
    [InlineData(DeviceKind.Cuda)]
    public void AdamWKeepsZeroParametersWithZeroGradientsExactlyZeroUnderWeightDecay(DeviceKind kind)
    {
        // The LM head's padded rows rely on it: m and v stay 0, the update is (0 / c1) / (sqrt(0) + eps) + wd · 0 = 0,
        // so every step subtracts lr · 0. 13 elements: vectors and a scalar tail; many steps at a large rate and decay.
        var device = TestDevices.Get(kind);
        var options = new AdamWOptions(Beta1: 0.9f, Beta2: 0.95f, Epsilon: 1e-8f, WeightDecay: 0.5f);
        var state = new[] { new float[13], new float[13], new float[13], new float[13] };
        for (var step = 1; step <= 20; step++)
        {
            var after = Step(device, options, state, [0.7f, 1f], step, learningRate: 0.1f);
            Assert.All(after, values => Assert.All(values, x => Assert.Equal(0, BitConverter.SingleToInt32Bits(x))));
            state = [after[0], state[1], after[1], after[2]];
        }
    }

    private static float[] Run(IDevice device, float[] gradients, float maxNorm)
    {
        using var g = DeviceData.Upload(device, gradients, DType.Float32, new TensorShape(gradients.Length));
        using var result = DeviceData.Poisoned(device, DType.Float32, new TensorShape(2));
        device.GradientNorm(g, maxNorm, result);
        return DeviceData.Download(device, result);
    }

    private static float[][] Step(IDevice device, AdamWOptions options, float[][] state, float[] clip, int step, float learningRate = 3e-3f)
    {
        var shape = new TensorShape(state[0].Length);
        using var p = DeviceData.Upload(device, state[0], DType.Float32, shape);
        using var g = DeviceData.Upload(device, state[1], DType.Float32, shape);
        using var m = DeviceData.Upload(device, state[2], DType.Float32, shape);
        using var v = DeviceData.Upload(device, state[3], DType.Float32, shape);
        using var bf = DeviceData.Poisoned(device, DType.BFloat16, shape);
        using var c = DeviceData.Upload(device, clip, DType.Float32, new TensorShape(2));
        device.AdamW(options, step, learningRate, p, g, m, v, bf, c);
        return [DeviceData.Download(device, p), DeviceData.Download(device, m), DeviceData.Download(device, v), DeviceData.Download(device, bf)];
    }
}
