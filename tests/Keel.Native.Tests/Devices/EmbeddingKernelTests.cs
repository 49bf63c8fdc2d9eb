namespace Keel.Native.Tests.Devices;

/// <summary>kernels/embedding.cu (gather forward, sorted deterministic scatter-add backward) against the CPU reference device.</summary>
public class EmbeddingKernelTests
{
    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void ForwardGathersRowsExactlyFromFloatAndBFloat16Tables(DeviceKind kind)
    {
        var device = TestDevices.Get(kind);
        foreach (var dtype in new[] { DType.Float32, DType.BFloat16 })
        {
            foreach (var (vocab, dim, count) in new[] { (50, 8, 1), (300, 64, 37) })
            {
                var rng = new Random(vocab + dim + count);
                var table = DeviceData.Random(rng, (long)vocab * dim);
                var tokens = Tokens(rng, count, vocab);
                var expected = Forward(TestDevices.Reference, dtype, vocab, dim, table, tokens);
                var actual = Forward(device, dtype, vocab, dim, table, tokens);
                Assert.Equal(expected, actual);
            }
        }
    }

    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void BackwardAccumulatesRepeatedTokensLikeTheReference(DeviceKind kind)
    {
        var device = TestDevices.Get(kind);
        foreach (var (name, vocab, dim, tokens) in Problems())
        {
            var rng = new Random(tokens.Length);
            var dOutput = DeviceData.Random(rng, (long)tokens.Length * dim);
            var dTable = DeviceData.Random(rng, (long)vocab * dim); // accumulated into, so not zero
            var expected = Backward(TestDevices.Reference, vocab, dim, tokens, dOutput, dTable);
            var actual = Backward(device, vocab, dim, tokens, dOutput, dTable);
            DeviceData.AssertClose(expected, actual, 1e-5, $"dTable, {name}");
        }
    }

    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void BackwardIsBitIdenticalFromRunToRun(DeviceKind kind)
    {
        var device = TestDevices.Get(kind);
        var (_, vocab, dim, tokens) = Problems().Last();
        var rng = new Random(11);
        var dOutput = DeviceData.Random(rng, (long)tokens.Length * dim);
        var dTable = DeviceData.Random(rng, (long)vocab * dim);
        var first = Backward(device, vocab, dim, tokens, dOutput, dTable);
        var second = Backward(device, vocab, dim, tokens, dOutput, dTable);
        Assert.Equal(first.Select(BitConverter.SingleToInt32Bits), second.Select(BitConverter.SingleToInt32Bits));
    }

    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void OutOfRangeTokensAreReportedWithoutTouchingMemoryOutside(DeviceKind kind)
    {
        var device = TestDevices.Get(kind);
        var (vocab, dim) = (20, 8);
        var rng = new Random(3);
        var table = DeviceData.Random(rng, vocab * dim);
        var tokens = Tokens(rng, 100, vocab);
        tokens[70] = -5;
        tokens[41] = vocab;
        using var t = Upload(device, tokens);
        using var w = DeviceData.Upload(device, table, DType.Float32, new TensorShape(vocab, dim));
        using var output = DeviceData.Poisoned(device, DType.Float32, new TensorShape(tokens.Length, dim));
        // The launch does not wait for the device; the next synchronization reports what the kernel recorded.
        device.EmbeddingForward(t, w, output);
        var forward = Assert.Throws<ArgumentOutOfRangeException>("tokens", device.Synchronize);
        Assert.Contains("tokens[41] = 20", forward.Message);
        Assert.Contains("2 token(s)", forward.Message);

        var dTableValues = DeviceData.Random(rng, vocab * dim);
        var dOutputValues = DeviceData.Random(rng, tokens.Length * dim);
        using var dOutput = DeviceData.Upload(device, dOutputValues, DType.Float32, new TensorShape(tokens.Length, dim));
        using var dTable = DeviceData.Upload(device, dTableValues, DType.Float32, new TensorShape(vocab, dim));
        device.EmbeddingBackward(t, dOutput, dTable);
        var backward = Assert.Throws<ArgumentOutOfRangeException>("tokens", () => DeviceData.Download(device, dTable));
        Assert.Contains("tokens[41] = 20", backward.Message);
        // The bad positions contributed nothing and wrote nowhere; every valid one was accumulated.
        var expected = (float[])dTableValues.Clone();
        for (var position = 0; position < tokens.Length; position++)
            if (tokens[position] >= 0 && tokens[position] < vocab)
                for (var j = 0; j < dim; j++) expected[tokens[position] * dim + j] += dOutputValues[position * dim + j];
        DeviceData.AssertClose(expected, DeviceData.Download(device, dTable), 1e-6, "dTable after skipping bad tokens");

        // The error is cleared once reported: valid tokens work again.
        tokens[70] = tokens[41] = 0;
        device.CopyFromHost<int>(tokens, t);
        device.EmbeddingForward(t, w, output);
        Assert.Equal(Forward(TestDevices.Reference, DType.Float32, vocab, dim, table, tokens), DeviceData.Download(device, output));
    }

    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void BadTensorsAreRejectedBeforeLaunch(DeviceKind kind)
    {
        var device = TestDevices.Get(kind);
        using var tokens = device.Allocate(DType.Int32, new TensorShape(4));
        using var floats = device.Allocate(DType.Float32, new TensorShape(4));
        using var table = device.Allocate(DType.Float32, new TensorShape(10, 8));
        using var halfTable = device.Allocate(DType.BFloat16, new TensorShape(10, 12)); // dim not a multiple of 8
        using var ints = device.Allocate(DType.Int32, new TensorShape(10, 8));
        using var output = device.Allocate(DType.Float32, new TensorShape(4 * 8 + 4));
        using var halfOutput = device.Allocate(DType.BFloat16, new TensorShape(4, 8));

        Assert.Throws<ArgumentException>("tokens", () => device.EmbeddingForward(floats, table, output.Tensor.Slice(0, 32)));
        Assert.Throws<ArgumentException>("table", () => device.EmbeddingForward(tokens, ints, output.Tensor.Slice(0, 32)));
        Assert.Throws<ArgumentException>("table", () => device.EmbeddingForward(tokens, halfTable, output.Tensor.Slice(0, 32)));
        Assert.Throws<ArgumentException>("table", () => device.EmbeddingForward(tokens, table.Tensor.Reshape(new TensorShape(80)), output.Tensor.Slice(0, 32)));
        Assert.Throws<ArgumentException>("output", () => device.EmbeddingForward(tokens, table, output.Tensor.Slice(0, 28)));
        Assert.Throws<ArgumentException>("output", () => device.EmbeddingForward(tokens, table, output.Tensor.Slice(1, 32)));
        Assert.Throws<ArgumentException>("output", () => device.EmbeddingForward(tokens, table, halfOutput));

        Assert.Throws<ArgumentException>("tokens", () => device.EmbeddingBackward(floats, output.Tensor.Slice(0, 32), table));
        Assert.Throws<ArgumentException>("dTable", () => device.EmbeddingBackward(tokens, output.Tensor.Slice(0, 32), halfTable));
        Assert.Throws<ArgumentException>("dOutput", () => device.EmbeddingBackward(tokens, halfOutput, table));
        Assert.Throws<ArgumentException>("dOutput", () => device.EmbeddingBackward(tokens, output.Tensor.Slice(1, 32), table));
        Assert.Throws<ArgumentException>("dTable", () => device.EmbeddingBackward(tokens, table.Tensor.Slice(0, 32), table));
    }

    // Token patterns that reach every path of the backward: one token; runs inside a tile; runs that cross tile
    // edges (64 sorted keys) and a run that covers whole tiles; more keys than one block sorts (4096), so the
    // global merge passes run.
    private static IEnumerable<(string Name, int Vocab, int Dim, int[] Tokens)> Problems()
    {
        var rng = new Random(17);
        yield return ("one token", 7, 8, [3]);
        yield return ("37 tokens of 1000", 1000, 12, Tokens(rng, 37, 1000));
        yield return ("300 tokens of 5", 5, 12, Tokens(rng, 300, 5));
        var skewed = Tokens(rng, 702, 9);
        for (var i = 0; i < skewed.Length; i += 3) skewed[i] = skewed[i + 1] = 4; // two thirds are token 4
        yield return ("702 tokens, two thirds one id", 9, 8, skewed);
        yield return ("5000 tokens of 600", 600, 16, Tokens(rng, 5000, 600));
    }

    private static int[] Tokens(Random rng, int count, int vocab)
    {
        var tokens = new int[count];
        for (var i = 0; i < count; i++) tokens[i] = rng.Next(vocab);
        return tokens;
    }

    private static DeviceBuffer Upload(IDevice device, int[] tokens)
    {
        var buffer = device.Allocate(DType.Int32, new TensorShape(tokens.Length));
        device.CopyFromHost<int>(tokens, buffer);
        return buffer;
    }

    private static float[] Forward(IDevice device, DType tableType, int vocab, int dim, float[] table, int[] tokens)
    {
        using var t = Upload(device, tokens);
        using var w = DeviceData.Upload(device, table, tableType, new TensorShape(vocab, dim));
        using var output = DeviceData.Poisoned(device, DType.Float32, new TensorShape(tokens.Length, dim));
        device.EmbeddingForward(t, w, output);
        return DeviceData.Download(device, output);
    }

    private static float[] Backward(IDevice device, int vocab, int dim, int[] tokens, float[] dOutput, float[] dTable)
    {
        using var t = Upload(device, tokens);
        using var d = DeviceData.Upload(device, dOutput, DType.Float32, new TensorShape(tokens.Length, dim));
        using var table = DeviceData.Upload(device, dTable, DType.Float32, new TensorShape(vocab, dim));
        device.EmbeddingBackward(t, d, table);
        return DeviceData.Download(device, table);
    }
}
