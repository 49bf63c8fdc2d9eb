namespace Keel.Native.Tests.Devices;

/// <summary>
/// kernels/attention.cu against the reference attention (fp64 inside, fed the very bf16 values the kernels read):
/// output and log-sum-exp forward, dq, dk, dv backward; causal and not, grouped-query ratios 1, 2, 4, head dims 64
/// and 128, sequences of 1, of whole tiles (128: one forward query block, one backward key block, two query steps)
/// and ragged (130: a second forward query block of 2 rows, a third 64-key tile of 2 keys, a backward key block of 2);
/// causal over 3+ key blocks per query block; the smaller tiles of 99 KiB parts; the same bits in any block order.
/// </summary>
public class AttentionKernelTests
{
    // Relative L2 error allowed: bf16 outputs of bf16 operands (the kernels round p and ds to bf16 for the mma);
    // the emulator measures about 2.4e-3 for every output and gradient, 1e-7 for the fp32 log-sum-exp.
    private const double OutputTolerance = 1e-2, GradientTolerance = 1e-2, LogSumExpTolerance = 1e-5;

    public static TheoryData<DeviceKind, int, int, int, bool> Cases()
    {
        var data = new TheoryData<DeviceKind, int, int, int, bool>();
        foreach (var kind in new[] { DeviceKind.Emulated, DeviceKind.Cuda })
            foreach (var headDim in new[] { 64, 128 })
                foreach (var group in new[] { 1, 2, 4 })
                    foreach (var sequence in new[] { 1, 128, 130 })
                        foreach (var causal in new[] { true, false })
                            data.Add(kind, headDim, group, sequence, causal);
        // The small head dimensions of small models: one GQA ratio, a ragged length, both masks.
        foreach (var kind in new[] { DeviceKind.Emulated, DeviceKind.Cuda })
            foreach (var headDim in new[] { 16, 32 })
                foreach (var causal in new[] { true, false })
                    data.Add(kind, headDim, 2, 130, causal);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void ForwardAndBackwardMatchTheReference(DeviceKind kind, int headDim, int group, int sequence, bool causal)
    {
        var device = TestDevices.Get(kind);
        // Two kv heads (one when four query heads share it), batch 2 for the short sequences.
        var kvHeads = group == 4 ? 1 : 2;
        var options = new AttentionOptions(Batch: sequence == 128 ? 1 : 2, sequence, kvHeads * group, kvHeads, headDim, causal);
        AssertMatchesReference(device, options, seed: headDim * 1000 + group * 100 + sequence + (causal ? 7 : 0));
    }

    public static TheoryData<DeviceKind, int> LongCausalCases()
    {
        var data = new TheoryData<DeviceKind, int>();
        foreach (var kind in new[] { DeviceKind.Emulated, DeviceKind.Cuda })
            foreach (var headDim in new[] { 16, 64, 128 })
                data.Add(kind, headDim);
        return data;
    }

    // Causal at 450 keys: the last backward query blocks take dq partials from 4 key blocks of 128 (D = 64, 128 on sm_80
    // and sm_90) or 8 of 64 (D = 16), added in key-block order through the counters and tickets; the last forward query
    // block runs over 8 key tiles, the first of them unmasked.
    [Theory]
    [MemberData(nameof(LongCausalCases))]
    public void CausalAttentionOverThreeOrMoreKeyBlocksPerQueryBlockMatchesTheReference(DeviceKind kind, int headDim) =>
        AssertMatchesReference(TestDevices.Get(kind), new AttentionOptions(Batch: 1, Sequence: 450, QueryHeads: 2, KvHeads: 1, headDim, Causal: true), seed: 450 + headDim);

    // A GPU with 99 KiB of shared memory per block (sm_86, sm_89) gets smaller tiles at D = 128; the emulator standing in
    // for one refuses any launch above that limit, so the reference match also shows the launcher chose them.
    [Theory]
    [InlineData(128, true)]
    [InlineData(128, false)]
    [InlineData(64, true)]
    public void TilesChosenForNinetyNineKiBOfSharedMemoryMatchTheReference(int headDim, bool causal)
    {
        using var device = TestDevices.OpenEmulated(new EmulatorOptions { Architecture = "sm_86" });
        Assert.Equal(99 << 10, device.Runtime.MaxSharedMemoryPerBlockOptInBytes);
        AssertMatchesReference(device, new AttentionOptions(Batch: 1, Sequence: 200, QueryHeads: 4, KvHeads: 2, headDim, causal), seed: headDim + (causal ? 1 : 0));
    }

    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void AnExplicitScaleIsUsed(DeviceKind kind) =>
        AssertMatchesReference(TestDevices.Get(kind), new AttentionOptions(Batch: 1, Sequence: 70, QueryHeads: 2, KvHeads: 1, HeadDim: 64, Scale: 0.3f), seed: 3);

    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void BackwardIsBitwiseDeterministic(DeviceKind kind)
    {
        var device = TestDevices.Get(kind);
        var options = new AttentionOptions(Batch: 1, Sequence: 300, QueryHeads: 4, KvHeads: 2, HeadDim: 64, Causal: false);
        var data = Problem.Draw(options, seed: 42);
        var first = Backward(device, options, data, DType.BFloat16);
        var second = Backward(device, options, data, DType.BFloat16);
        for (var i = 0; i < 3; i++) Assert.Equal(first[i], second[i]);
    }

    // The emulator's order check starts the blocks in a seeded random order (and the threads of each block), so the
    // key-block tickets go out differently under every seed; dq is still summed in key-block order, bit for bit.
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void BackwardIsBitwiseTheSameInWhateverOrderBlocksStart(bool causal)
    {
        var options = new AttentionOptions(Batch: 1, Sequence: 300, QueryHeads: 4, KvHeads: 2, HeadDim: 64, Causal: causal);
        var data = Problem.Draw(options, seed: 43);
        float[][] Run(ulong seed)
        {
            var checks = EmulatorChecks.Order | EmulatorChecks.Spin;
            using var device = TestDevices.OpenEmulated(new EmulatorOptions(WorkerThreads: 2) { Checks = checks, Seed = seed });
            return Backward(device, options, data, DType.BFloat16);
        }
        var first = Run(1);
        foreach (var seed in new ulong[] { 2, 3 })
        {
            var other = Run(seed);
            for (var i = 0; i < 3; i++) Assert.Equal(first[i], other[i]);
        }
    }

    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void UnsupportedShapesAndTypesAreRejectedBeforeLaunch(DeviceKind kind)
    {
        var device = TestDevices.Get(kind);
        var options = new AttentionOptions(Batch: 1, Sequence: 8, QueryHeads: 2, KvHeads: 1, HeadDim: 64);
        using var q = device.Allocate(DType.BFloat16, new TensorShape(1, 8, 2, 64));
        using var kv = device.Allocate(DType.BFloat16, new TensorShape(1, 8, 1, 64));
        using var lse = device.Allocate(DType.Float32, new TensorShape(1, 2, 8));
        using var qFloat = device.Allocate(DType.Float32, new TensorShape(1, 8, 2, 64));

        Assert.Throws<ArgumentException>("options", () => device.AttentionForward(options with { HeadDim = 48 }, q, kv, kv, q, lse));
        Assert.Throws<ArgumentException>("options", () => device.AttentionForward(options with { KvHeads = 3 }, q, kv, kv, q, lse));
        Assert.Throws<ArgumentException>("q", () => device.AttentionForward(options, qFloat, kv, kv, q, lse));
        Assert.Throws<ArgumentException>("k", () => device.AttentionForward(options, q, q, kv, q, lse));
        Assert.Throws<ArgumentException>("logSumExp", () => device.AttentionForward(options, q, kv, kv, q, kv));
        Assert.Throws<ArgumentException>("dk", () => device.AttentionBackward(options, q, kv, kv, q, lse, q, q, q, kv));
        Assert.Throws<ArgumentException>("output", () => device.AttentionForward(options, q, kv, kv, q, lse));
    }

    private static void AssertMatchesReference(IDevice device, AttentionOptions options, int seed)
    {
        var data = Problem.Draw(options, seed);
        var what = $"D={options.HeadDim} Hq={options.QueryHeads} Hkv={options.KvHeads} S={options.Sequence} {(options.Causal ? "causal" : "full")} scale {options.EffectiveScale:G3}";

        var (output, lse) = Forward(device, options, data, DType.BFloat16);
        DeviceData.AssertClose(data.Output, output, OutputTolerance, $"output, {what}");
        DeviceData.AssertClose(data.LogSumExp, lse, LogSumExpTolerance, $"logsumexp, {what}");

        var expected = Backward(TestDevices.Reference, options, data, DType.Float32);
        var actual = Backward(device, options, data, DType.BFloat16);
        string[] names = ["dq", "dk", "dv"];
        for (var i = 0; i < 3; i++) AssertGradientClose(expected[i], actual[i], data.DOutput, $"{names[i]}, {what}");
    }

    private static (float[] Output, float[] LogSumExp) Forward(IDevice device, AttentionOptions o, Problem data, DType dtype)
    {
        using var q = DeviceData.Upload(device, data.Q, dtype, QueryShape(o));
        using var k = DeviceData.Upload(device, data.K, dtype, KvShape(o));
        using var v = DeviceData.Upload(device, data.V, dtype, KvShape(o));
        using var output = DeviceData.Poisoned(device, dtype, QueryShape(o));
        using var lse = DeviceData.Poisoned(device, DType.Float32, new TensorShape(o.Batch, o.QueryHeads, o.Sequence));
        device.AttentionForward(o, q, k, v, output, lse);
        return (DeviceData.Download(device, output), DeviceData.Download(device, lse));
    }

    private static float[][] Backward(IDevice device, AttentionOptions o, Problem data, DType dtype)
    {
        using var q = DeviceData.Upload(device, data.Q, dtype, QueryShape(o));
        using var k = DeviceData.Upload(device, data.K, dtype, KvShape(o));
        using var v = DeviceData.Upload(device, data.V, dtype, KvShape(o));
        using var output = DeviceData.Upload(device, data.Output, dtype, QueryShape(o));
        using var lse = DeviceData.Upload(device, data.LogSumExp, DType.Float32, new TensorShape(o.Batch, o.QueryHeads, o.Sequence));
        using var dOutput = DeviceData.Upload(device, data.DOutput, dtype, QueryShape(o));
        using var dq = DeviceData.Poisoned(device, dtype, QueryShape(o));
        using var dk = DeviceData.Poisoned(device, dtype, KvShape(o));
        using var dv = DeviceData.Poisoned(device, dtype, KvShape(o));
        device.AttentionBackward(o, q, k, v, output, lse, dOutput, dq, dk, dv);
        return [DeviceData.Download(device, dq), DeviceData.Download(device, dk), DeviceData.Download(device, dv)];
    }

    // Relative error, except that a gradient which vanishes in exact arithmetic (dq and dk with one key: ds = p (dp - D)
    // is 0 since o = v) is held to the rounding of dp - D instead, measured against the size of dO.
    private static void AssertGradientClose(float[] expected, float[] actual, float[] dOutput, string what)
    {
        static double Norm(float[] x) => Math.Sqrt(x.Sum(e => (double)e * e));
        var floor = 1e-3 * Norm(dOutput);
        if (Norm(expected) >= floor)
        {
            DeviceData.AssertClose(expected, actual, GradientTolerance, what);
            return;
        }
        Assert.All(actual, a => Assert.True(float.IsFinite(a), $"{what}: {a}"));
        var error = Math.Sqrt(expected.Zip(actual, (e, a) => ((double)a - e) * ((double)a - e)).Sum());
        Assert.True(error <= GradientTolerance * floor, $"{what}: error {error:E2} exceeds {GradientTolerance * floor:E2} (the expected gradient nearly vanishes).");
    }

    private static TensorShape QueryShape(AttentionOptions o) => new(o.Batch, o.Sequence, o.QueryHeads, o.HeadDim);

    private static TensorShape KvShape(AttentionOptions o) => new(o.Batch, o.Sequence, o.KvHeads, o.HeadDim);

    /// <summary>
    /// Inputs rounded to bf16 (so the fp32 reference sees exactly what the kernels read), with the reference forward's
    /// output (also rounded to bf16) and log-sum-exp, which both devices' backward passes then share.
    /// </summary>
    private sealed record Problem(float[] Q, float[] K, float[] V, float[] DOutput, float[] Output, float[] LogSumExp)
    {
        public static Problem Draw(AttentionOptions o, int seed)
        {
            var rng = new Random(seed);
            long queries = QueryShape(o).ElementCount, keys = KvShape(o).ElementCount;
            float[] q = Bf16(DeviceData.Random(rng, queries)), k = Bf16(DeviceData.Random(rng, keys)), v = Bf16(DeviceData.Random(rng, keys));
            var dOutput = Bf16(DeviceData.Random(rng, queries));
            var reference = new Problem(q, k, v, dOutput, [], []);
            var (output, lse) = Forward(TestDevices.Reference, o, reference, DType.Float32);
            return reference with { Output = Bf16(output), LogSumExp = lse };
        }

        private static float[] Bf16(float[] values) => Array.ConvertAll(values, BFloat16.Round);
    }
}
