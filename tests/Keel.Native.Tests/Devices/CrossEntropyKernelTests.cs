namespace Keel.Native.Tests.Devices;

/// <summary>kernels/cross_entropy.cu (fused softmax cross-entropy with its gradient) against the CPU reference device.</summary>
public class CrossEntropyKernelTests
{
    // (rows, vocabulary, row stride). V = 259 and 50257 are odd: unpadded, their rows start at every 4-byte phase of a
    // 16-byte vector; padded to a multiple of 64 as the model pads them (320, 50304), every row is 16-byte aligned and
    // the padding is 61 or 47 columns.
    private static readonly (int Rows, int Vocab, int Stride)[] Sizes =
        [(1, 256, 256), (37, 259, 259), (37, 259, 320), (6, 1000, 1000), (6, 1000, 1024), (3, 50257, 50257), (3, 50257, 50304)];

    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void LossesAndGradientsMatchTheReferenceWithIgnoredTargets(DeviceKind kind)
    {
        var device = TestDevices.Get(kind);
        foreach (var (rows, vocab, stride) in Sizes)
        {
            var (logits, targets) = Problem(rows, vocab, stride);
            var scale = 1f / Math.Max(1, targets.Count(t => t != CrossEntropy.IgnoreTarget));
            var expected = Run(TestDevices.Reference, rows, vocab, stride, logits, targets, scale, inPlace: false);
            var actual = Run(device, rows, vocab, stride, logits, targets, scale, inPlace: false);
            DeviceData.AssertClose(expected.Losses, actual.Losses, 1e-5, $"losses [{rows}, {vocab} of {stride}]");
            DeviceData.AssertClose(expected.DLogits, actual.DLogits, 1e-5, $"dLogits [{rows}, {vocab} of {stride}]");
            for (var t = 0; t < rows; t++)
            {
                if (targets[t] != CrossEntropy.IgnoreTarget) continue;
                Assert.Equal(0f, actual.Losses[t]);
                Assert.All(actual.DLogits.AsSpan(t * stride, stride).ToArray(), g => Assert.Equal(0f, g));
            }
        }
    }

    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void PaddedColumnsAreLeftOutOfTheSoftmaxAndGetExactlyZeroGradient(DeviceKind kind)
    {
        // The padded logits are NaN: a kernel that read one into a row's max or sum would make the row NaN. The gradient
        // buffer starts NaN, so a padded column the kernel fails to write stays NaN.
        var device = TestDevices.Get(kind);
        foreach (var (rows, vocab, stride) in new[] { (37, 259, 320), (3, 50257, 50304) })
        {
            var (logits, targets) = Problem(rows, vocab, stride);
            var unpadded = new float[rows * vocab];
            for (var t = 0; t < rows; t++) logits.AsSpan(t * stride, vocab).CopyTo(unpadded.AsSpan(t * vocab));
            var expected = Run(TestDevices.Reference, rows, vocab, vocab, unpadded, targets, 0.25f, inPlace: false);
            foreach (var inPlace in new[] { false, true })
            {
                var actual = Run(device, rows, vocab, stride, logits, targets, 0.25f, inPlace);
                DeviceData.AssertClose(expected.Losses, actual.Losses, 1e-5, $"losses [{rows}, {vocab} of {stride}], in place {inPlace}");
                for (var t = 0; t < rows; t++)
                {
                    DeviceData.AssertClose(expected.DLogits.AsSpan(t * vocab, vocab), actual.DLogits.AsSpan(t * stride, vocab), 1e-5,
                                           $"dLogits row {t} [{rows}, {vocab} of {stride}], in place {inPlace}");
                    Assert.All(actual.DLogits.AsSpan(t * stride + vocab, stride - vocab).ToArray(), g => Assert.Equal(0f, g));
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void GradientInPlaceOverTheLogitsMatchesTheReference(DeviceKind kind)
    {
        var device = TestDevices.Get(kind);
        foreach (var (rows, vocab, stride) in new[] { (37, 259, 259), (2, 50257, 50257), (2, 50257, 50304) })
        {
            var (logits, targets) = Problem(rows, vocab, stride);
            var expected = Run(TestDevices.Reference, rows, vocab, stride, logits, targets, 0.5f, inPlace: false);
            var actual = Run(device, rows, vocab, stride, logits, targets, 0.5f, inPlace: true);
            DeviceData.AssertClose(expected.Losses, actual.Losses, 1e-5, $"losses in place [{rows}, {vocab} of {stride}]");
            DeviceData.AssertClose(expected.DLogits, actual.DLogits, 1e-5, $"dLogits in place [{rows}, {vocab} of {stride}]");
        }
    }

    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void LossesAloneLeaveTheLogitsUntouched(DeviceKind kind)
    {
        var device = TestDevices.Get(kind);
        foreach (var (rows, vocab, stride) in new[] { (5, 259, 259), (5, 259, 320) })
        {
            var (logits, targets) = Problem(rows, vocab, stride);
            using var x = DeviceData.Upload(device, logits, DType.Float32, new TensorShape(rows, stride));
            using var y = Targets(device, targets);
            using var losses = DeviceData.Poisoned(device, DType.Float32, new TensorShape(rows));
            device.CrossEntropy(x, vocab, y, losses, default, 1f);
            var expected = new float[rows];
            CrossEntropy.Forward(rows, vocab, stride, logits, targets, expected);
            DeviceData.AssertClose(expected, DeviceData.Download(device, losses), 1e-5, $"losses without gradient [{rows}, {vocab} of {stride}]");
            Assert.Equal(logits, DeviceData.Download(device, x));
        }
    }

    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void TargetOutsideTheVocabularyGivesANaNRowAndLeavesTheOthersRight(DeviceKind kind)
    {
        var device = TestDevices.Get(kind);
        // A target past the vocabulary (259) but inside the padding (320) is as wrong as one past the row.
        foreach (var (rows, vocab, stride, bad) in new[] { (4, 259, 259, 259), (4, 259, 320, 259), (4, 259, 320, 319) })
        {
            var (logits, targets) = Problem(rows, vocab, stride);
            var expected = Run(TestDevices.Reference, rows, vocab, stride, logits, targets, 1f, inPlace: false);
            targets[1] = bad;
            var actual = Run(device, rows, vocab, stride, logits, targets, 1f, inPlace: false);
            Assert.True(float.IsNaN(actual.Losses[1]));
            Assert.All(actual.DLogits.AsSpan(stride, vocab).ToArray(), g => Assert.True(float.IsNaN(g)));
            int[] others = [0, 2, 3];
            DeviceData.AssertClose(others.Select(t => expected.Losses[t]).ToArray(), others.Select(t => actual.Losses[t]).ToArray(), 1e-5, "losses of the other rows");
            DeviceData.AssertClose(expected.DLogits.AsSpan(2 * stride).ToArray(), actual.DLogits.AsSpan(2 * stride).ToArray(), 1e-5, "dLogits of the rows after");
        }
    }

    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void BadTensorsAreRejectedBeforeLaunch(DeviceKind kind)
    {
        var device = TestDevices.Get(kind);
        using var logits = device.Allocate(DType.Float32, new TensorShape(4, 259));
        using var wide = device.Allocate(DType.Float32, new TensorShape(4 * 259 + 8));
        using var halves = device.Allocate(DType.BFloat16, new TensorShape(4, 259));
        using var targets = device.Allocate(DType.Int32, new TensorShape(4));
        using var floats = device.Allocate(DType.Float32, new TensorShape(4));
        using var losses = device.Allocate(DType.Float32, new TensorShape(4));

        Assert.Throws<ArgumentException>("logits", () => device.CrossEntropy(halves, 259, targets, losses, default, 1f));
        Assert.Throws<ArgumentException>("logits", () => device.CrossEntropy(logits.Tensor.Reshape(new TensorShape(1036)), 259, targets, losses, default, 1f));
        Assert.Throws<ArgumentException>("logits", () => device.CrossEntropy(wide.Tensor.Slice(1, 1036).Reshape(new TensorShape(4, 259)), 259, targets, losses, default, 1f));
        Assert.Throws<ArgumentException>("vocabulary", () => device.CrossEntropy(logits, 260, targets, losses, default, 1f));
        Assert.Throws<ArgumentException>("vocabulary", () => device.CrossEntropy(logits, 0, targets, losses, default, 1f));
        Assert.Throws<ArgumentException>("targets", () => device.CrossEntropy(logits, 259, floats, losses, default, 1f));
        Assert.Throws<ArgumentException>("losses", () => device.CrossEntropy(logits, 259, targets, targets, default, 1f));
        Assert.Throws<ArgumentException>("losses", () => device.CrossEntropy(logits, 259, targets, losses.Tensor.Slice(0, 3), default, 1f));
        Assert.Throws<ArgumentException>("losses", () => device.CrossEntropy(logits, 259, targets, logits.Tensor.Slice(0, 4), default, 1f));
        Assert.Throws<ArgumentException>("dLogits", () => device.CrossEntropy(logits, 259, targets, losses, halves, 1f));
        Assert.Throws<ArgumentException>("dLogits", () => device.CrossEntropy(logits, 259, targets, losses, wide.Tensor.Slice(0, 1036), 1f));
        Assert.Throws<ArgumentException>("dLogits", () => device.CrossEntropy(logits, 259, targets, losses, wide.Tensor.Slice(1, 1036).Reshape(new TensorShape(4, 259)), 1f));
        var shifted = new Tensor(logits.Tensor.Address + 16, DType.Float32, new TensorShape(4, 259));
        Assert.Throws<ArgumentException>("dLogits", () => device.CrossEntropy(logits, 259, targets, losses, shifted, 1f));
    }

    // Logits with a spread like a trained LM head's in the vocabulary's columns and NaN in the padding; every fifth row ignored.
    private static (float[] Logits, int[] Targets) Problem(int rows, int vocab, int stride)
    {
        var rng = new Random(rows * 65_537 + vocab);
        var logits = DeviceData.Random(rng, (long)rows * stride, scale: 3);
        for (var t = 0; t < rows; t++) logits.AsSpan(t * stride + vocab, stride - vocab).Fill(float.NaN);
        var targets = new int[rows];
        for (var t = 0; t < rows; t++) targets[t] = t % 5 == 4 ? CrossEntropy.IgnoreTarget : rng.Next(vocab);
        return (logits, targets);
    }

    private static DeviceBuffer Targets(IDevice device, int[] targets)
    {
        var buffer = device.Allocate(DType.Int32, new TensorShape(targets.Length));
        device.CopyFromHost<int>(targets, buffer);
        return buffer;
    }

    private static (float[] Losses, float[] DLogits) Run(IDevice device, int rows, int vocab, int stride, float[] logits, int[] targets, float scale, bool inPlace)
    {
        var shape = new TensorShape(rows, stride);
        using var x = DeviceData.Upload(device, logits, DType.Float32, shape);
        using var y = Targets(device, targets);
        using var losses = DeviceData.Poisoned(device, DType.Float32, new TensorShape(rows));
        using var d = DeviceData.Poisoned(device, DType.Float32, inPlace ? new TensorShape(1) : shape);
        device.CrossEntropy(x, vocab, y, losses, inPlace ? x : d, scale);
        return (DeviceData.Download(device, losses), DeviceData.Download(device, inPlace ? x : d));
    }
}
