namespace Keel.Native.Tests.Devices;

/// <summary>
/// kernels/residual_norm.cu against the CPU reference device: every variant of <see cref="ResidualNorm"/> with bf16
/// and fp32 branch outputs, forward outputs, saved statistics and every gradient; a gradient check of the kernels'
/// backward through the fp64 reference forward; and the reason the residual stream is fp32.
/// </summary>
public class ResidualNormKernelTests
{
    private const int SubLayers = 48;

    /// <summary>The variants of ResidualNorm's documentation, with the gradients each one receives.</summary>
    private static (ResidualNormOptions Options, bool HasF, bool WithDy, bool WithZ) Variant(string name, NormKind kind) => name switch
    {
        "KeelGeneral" => (new(kind, SubLayers, OutputNorm: true, InputNorm: true), true, true, true),
        "KeelFirstAttention" => (new(kind, 1f, OutputNorm: false, InputNorm: true), true, true, true),
        "KeelFirstFfn" => (new(kind, 1f, OutputNorm: true, InputNorm: true), true, false, true),
        // The LM head reads z = bf16(y); its gradient is the only one arriving.
        "KeelLast" => (new(kind, SubLayers, OutputNorm: true, InputNorm: false), true, false, true),
        "PreLn" => (new(kind, 1f, OutputNorm: false, InputNorm: true), true, true, true),
        "PostLn" => (new(kind, 1f, OutputNorm: true, InputNorm: false), true, true, false),
        "DeepNorm" => (new(kind, MathF.Pow(SubLayers, 0.25f), OutputNorm: true, InputNorm: false), true, true, true),
        "StandaloneNorm" => (new(kind, 1f, OutputNorm: false, InputNorm: true), false, true, true),
        "ResidualAdd" => (new(kind, 2f, OutputNorm: false, InputNorm: false), true, true, false),
        _ => throw new ArgumentOutOfRangeException(nameof(name)),
    };

    private static readonly string[] VariantNames =
        ["KeelGeneral", "KeelFirstAttention", "KeelFirstFfn", "KeelLast", "PreLn", "PostLn", "DeepNorm", "StandaloneNorm", "ResidualAdd"];

    public static TheoryData<DeviceKind, string, NormKind> Variants()
    {
        var data = new TheoryData<DeviceKind, string, NormKind>();
        foreach (var device in new[] { DeviceKind.Emulated, DeviceKind.Cuda })
        foreach (var name in VariantNames)
        foreach (var kind in new[] { NormKind.Rms, NormKind.Layer })
        {
            // Without a norm the kind changes nothing.
            if (name != "ResidualAdd" || kind == NormKind.Rms) data.Add(device, name, kind);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void ForwardAndBackwardMatchTheReference(DeviceKind deviceKind, string variant, NormKind kind)
    {
        var device = TestDevices.Get(deviceKind);
        var (options, hasF, withDy, withZ) = Variant(variant, kind);
        // Hidden sizes: sub-warp rows (128), a ragged one (1000), one warp (1024); the largest ones once per kind.
        var shapes = new List<(int Rows, int Hidden)> { (67, 128), (37, 1000), (21, 1024) };
        if (variant == "KeelGeneral") shapes.AddRange([(5, 4096), (3, 8192)]);
        foreach (var fType in hasF ? new[] { DType.BFloat16, DType.Float32 } : [DType.BFloat16])
        foreach (var (rows, hidden) in shapes)
        {
            if (fType == DType.Float32 && hidden > 1024) continue;
            var data = new CaseData(options, rows, hidden, hasF ? fType : null, withDy, withZ, seed: hidden * 7 + rows + variant.Length);
            var expected = data.Run(TestDevices.Reference);
            var actual = data.Run(device);
            var what = $"{variant} {kind} f {(hasF ? fType : "none")} [{rows}, {hidden}]";
            foreach (var (name, values) in expected)
            {
                var tolerance = name == "z" || (name == "df" && fType == DType.BFloat16) ? 1e-2 : 1e-5;
                DeviceData.AssertClose(values, actual[name], tolerance, $"{what}: {name}");
            }
        }
    }

    public static TheoryData<DeviceKind, string, NormKind> GradientCheckVariants()
    {
        var data = new TheoryData<DeviceKind, string, NormKind>();
        foreach (var device in new[] { DeviceKind.Emulated, DeviceKind.Cuda })
        foreach (var name in new[] { "KeelGeneral", "KeelLast", "PreLn" })
        foreach (var kind in new[] { NormKind.Rms, NormKind.Layer })
            data.Add(device, name, kind);
        return data;
    }

    /// <summary>
    /// The kernels' backward (fp32 f, alpha = 1024 for the Keel variants) against central differences of the fp64
    /// reference forward, along one random direction per input: L = Σ y ⊙ Wy + Σ z ⊙ Wz, dy = Wy, dz = Wz.
    /// </summary>
    [Theory]
    [MemberData(nameof(GradientCheckVariants))]
    public void BackwardMatchesFiniteDifferencesOfTheReferenceForward(DeviceKind deviceKind, string variant, NormKind kind)
    {
        var device = TestDevices.Get(deviceKind);
        var (options, _, _, _) = Variant(variant, kind);
        if (options.Alpha > 1) options = options with { Alpha = 1024 };
        const int rows = 9, hidden = 200;
        var data = new CaseData(options, rows, hidden, DType.Float32, withDy: true, withZ: true, seed: 11 + variant.Length + (int)kind);
        var gradients = data.Run(device);
        // The gradient sums start from random values: the check is on what backward added.
        string[] parameterNames = ["dGainOut", "dBiasOut", "dGainIn", "dBiasIn"];
        foreach (var (name, initial) in parameterNames.Zip(data.InitialParameterGradients))
            if (gradients.TryGetValue(name, out var sum)) gradients[name] = sum.Select((v, i) => v - initial[i]).ToArray();

        var inputs = new (string Name, float[] Values, string Gradient)[]
        {
            ("x", data.X, "dx"), ("f", data.F!, "df"), ("gainOut", data.GainOut, "dGainOut"), ("biasOut", data.BiasOut, "dBiasOut"),
            ("gainIn", data.GainIn, "dGainIn"), ("biasIn", data.BiasIn, "dBiasIn"),
        };
        var rng = new Random(5);
        foreach (var (name, values, gradientName) in inputs)
        {
            if (values.Length == 0) continue;
            var direction = DeviceData.Random(rng, values.Length);
            double analytic = 0;
            var gradient = gradients[gradientName];
            for (var i = 0; i < values.Length; i++) analytic += (double)gradient[i] * direction[i];
            const double h = 1e-4;
            var numeric = (data.ReferenceLoss(name, direction, h) - data.ReferenceLoss(name, direction, -h)) / (2 * h);
            Assert.True(Math.Abs(numeric) > 1e-3, $"{variant} {kind}: the loss hardly depends on {name} ({numeric:E2}), so the check would prove nothing.");
            var error = Math.Abs(analytic - numeric) / Math.Abs(numeric);
            Assert.True(error < 1e-4, $"{variant} {kind}: d{name} along a random direction is {analytic:E6}, finite differences give {numeric:E6} (relative error {error:E2}).");
        }
    }

    /// <summary>
    /// Why x is fp32: with alpha = 1024, rounding x to bf16 perturbs alpha·x by about as much as the whole branch
    /// output f, so the branch's contribution to y is lost in the noise; with fp32 x the kernel keeps it to 1e-3.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void Fp32ResidualStreamKeepsTheBranchSignalThatBf16Loses(DeviceKind deviceKind)
    {
        var device = TestDevices.Get(deviceKind);
        const int rows = 16, hidden = 1024;
        var options = new ResidualNormOptions(NormKind.Rms, 1024f, OutputNorm: true, InputNorm: false);
        var rng = new Random(17);
        float[] x = DeviceData.Random(rng, rows * hidden), f = DeviceData.Random(rng, rows * hidden);
        var gain = Enumerable.Repeat(1f, hidden).ToArray();
        var xStoredAsBf16 = Array.ConvertAll(x, BFloat16.Round);

        // Exact (fp64) outputs with and without the branch; the branch's signal is their difference.
        var exact = ReferenceY(options, x, f, gain, rows, hidden);
        var withoutBranch = ReferenceY(options, x, new double[x.Length], gain, rows, hidden);
        var signal = Norm(exact.Select((v, i) => v - withoutBranch[i]));

        double ErrorRelativeToSignal(float[] stream)
        {
            var y = KernelY(device, options, stream, f, gain, rows, hidden);
            return Norm(y.Select((v, i) => v - exact[i])) / signal;
        }

        var fp32Error = ErrorRelativeToSignal(x);
        var bf16Error = ErrorRelativeToSignal(xStoredAsBf16);
        Assert.True(fp32Error < 1e-3, $"fp32 x: the error is {fp32Error:E2} of the branch's signal.");
        Assert.True(bf16Error > 0.5, $"bf16 x: the error is only {bf16Error:E2} of the branch's signal.");
    }

    [Fact]
    public void GainGradientsAddEveryBlockOfAWideGrid()
    {
        // Twelve emulated SMs give the backward 24 blocks, so each of the finalize's 8 slices adds three blocks'
        // partials; LayerNorm with both norms uses all four gradient vectors.
        using var device = EmulatedDevice.Open(new EmulatorOptions(WorkerThreads: 12));
        var options = new ResidualNormOptions(NormKind.Layer, SubLayers, OutputNorm: true, InputNorm: true);
        var data = new CaseData(options, 203, 1000, DType.BFloat16, withDy: true, withZ: true, seed: 8);
        var expected = data.Run(TestDevices.Reference);
        var actual = data.Run(device);
        foreach (var name in new[] { "dGainOut", "dBiasOut", "dGainIn", "dBiasIn" })
            DeviceData.AssertClose(expected[name], actual[name], 1e-5, $"{name} on 24 blocks");
    }

    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void BackwardIsDeterministic(DeviceKind deviceKind)
    {
        var device = TestDevices.Get(deviceKind);
        var options = new ResidualNormOptions(NormKind.Rms, SubLayers, OutputNorm: true, InputNorm: true);
        var data = new CaseData(options, 45, 1000, DType.BFloat16, withDy: true, withZ: true, seed: 3);
        var first = data.Run(device);
        var second = data.Run(device);
        foreach (var (name, values) in first) Assert.Equal(values, second[name]);
    }

    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void BadArgumentsAreRejectedBeforeLaunch(DeviceKind deviceKind)
    {
        var device = TestDevices.Get(deviceKind);
        var keel = new ResidualNormOptions(NormKind.Rms, 4f, OutputNorm: true, InputNorm: true);
        const int rows = 4, hidden = 64;
        var shape = new TensorShape(rows, hidden);
        using var x = device.Allocate(DType.Float32, shape);
        using var f = device.Allocate(DType.BFloat16, shape);
        using var fPadded = device.Allocate(DType.BFloat16, new TensorShape(rows * hidden + 8));
        using var y = device.Allocate(DType.Float32, shape);
        using var z = device.Allocate(DType.BFloat16, shape);
        using var zFloat = device.Allocate(DType.Float32, shape);
        using var gains = device.Allocate(DType.Float32, new TensorShape(4 * hidden));
        using var stats = device.Allocate(DType.Float32, new TensorShape(4 * rows));
        using var wide = device.Allocate(DType.Float32, new TensorShape(rows, 12));
        var gain = new NormWeights(gains.Tensor.Slice(0, hidden), default);
        var gainIn = new NormWeights(gains.Tensor.Slice(hidden, hidden), default);
        var statistics = new NormStatistics(default, stats.Tensor.Slice(0, rows), default, stats.Tensor.Slice(rows, rows));

        void Forward(Tensor xs, Tensor fs, NormWeights outNorm, Tensor zs, NormStatistics s) =>
            device.ResidualNormForward(keel, xs, fs, outNorm, gainIn, y, zs, s);
        Assert.Throws<ArgumentException>("x", () => Forward(wide, default, gain, z, statistics));
        Assert.Throws<ArgumentException>("f", () => Forward(x, fPadded.Tensor.Slice(1, rows * hidden).Reshape(shape), gain, z, statistics));
        Assert.Throws<ArgumentException>("z", () => Forward(x, f, gain, zFloat, statistics));
        Assert.Throws<ArgumentException>("z", () => Forward(x, f, gain, default, statistics));
        Assert.Throws<ArgumentException>("outNorm", () => Forward(x, f, new NormWeights(gain.Gain, gainIn.Gain), z, statistics));
        Assert.Throws<ArgumentException>("outNorm", () => Forward(x, f, new NormWeights(gains.Tensor.Slice(1, hidden), default), z, statistics));
        Assert.Throws<ArgumentException>("statistics", () => Forward(x, f, gain, z, statistics with { RstdIn = default }));

        using var dx = device.Allocate(DType.Float32, shape);
        using var dfFloat = device.Allocate(DType.Float32, shape);
        Assert.Throws<ArgumentException>("df", () => device.ResidualNormBackward(keel, x, f, y, gain, gainIn, statistics, y, z, dx, dfFloat,
            new NormWeights(gains.Tensor.Slice(2 * hidden, hidden), default), new NormWeights(gains.Tensor.Slice(3 * hidden, hidden), default)));
        Assert.Throws<ArgumentException>("inNormGradients", () => device.ResidualNormBackward(keel, x, default, y, gain, gainIn, statistics, y, z, dx, default,
            new NormWeights(gains.Tensor.Slice(2 * hidden, hidden), default), default));
    }

    private static double[] ReferenceY(ResidualNormOptions options, float[] x, IReadOnlyList<double> f, float[] gain, int rows, int hidden)
    {
        var y = new double[x.Length];
        ResidualNorm.Forward<double>(options, rows, hidden, Array.ConvertAll(x, v => (double)v), f.ToArray(),
            Array.ConvertAll(gain, v => (double)v), [], [], [], y, [], [], new double[rows], [], []);
        return y;
    }

    private static double[] ReferenceY(ResidualNormOptions options, float[] x, float[] f, float[] gain, int rows, int hidden) =>
        ReferenceY(options, x, Array.ConvertAll(f, v => (double)v), gain, rows, hidden);

    private static float[] KernelY(IDevice device, ResidualNormOptions options, float[] x, float[] f, float[] gain, int rows, int hidden)
    {
        var shape = new TensorShape(rows, hidden);
        using var xs = DeviceData.Upload(device, x, DType.Float32, shape);
        using var fs = DeviceData.Upload(device, f, DType.Float32, shape);
        using var g = DeviceData.Upload(device, gain, DType.Float32, new TensorShape(hidden));
        using var y = DeviceData.Poisoned(device, DType.Float32, shape);
        using var rstd = DeviceData.Poisoned(device, DType.Float32, new TensorShape(rows));
        device.ResidualNormForward(options, xs, fs, new NormWeights(g, default), NormWeights.None, y, default, new NormStatistics(default, rstd, default, default));
        return DeviceData.Download(device, y);
    }

    private static double Norm(IEnumerable<double> values) => Math.Sqrt(values.Sum(v => v * v));

    private static double Norm(IEnumerable<float> values) => Norm(values.Select(v => (double)v));

    /// <summary>
    /// The inputs of one forward + backward case, drawn once, and running it on a device: forward, then backward
    /// from forward's own statistics, returning every output by name.
    /// </summary>
    private sealed class CaseData
    {
        private readonly ResidualNormOptions _options;
        private readonly int _rows, _hidden;
        private readonly DType? _fType;
        private readonly bool _withDy, _withZ;

        public CaseData(ResidualNormOptions options, int rows, int hidden, DType? fType, bool withDy, bool withZ, int seed)
        {
            (_options, _rows, _hidden, _fType, _withDy, _withZ) = (options, rows, hidden, fType, withDy, withZ || options.InputNorm);
            var rng = new Random(seed);
            bool layer = options.Kind == NormKind.Layer;
            int n = rows * hidden;
            X = DeviceData.Random(rng, n);
            F = fType is { } type ? Representable(DeviceData.Random(rng, n), type) : null;
            GainOut = options.OutputNorm ? Around1(rng, hidden) : [];
            BiasOut = options.OutputNorm && layer ? DeviceData.Random(rng, hidden, 0.3) : [];
            GainIn = options.InputNorm ? Around1(rng, hidden) : [];
            BiasIn = options.InputNorm && layer ? DeviceData.Random(rng, hidden, 0.3) : [];
            Dy = withDy ? DeviceData.Random(rng, n) : [];
            Dz = _withZ ? Representable(DeviceData.Random(rng, n), DType.BFloat16) : [];
            InitialParameterGradients = [.. new[] { GainOut, BiasOut, GainIn, BiasIn }.Select(p => DeviceData.Random(rng, p.Length))];
        }

        public float[] X { get; }
        public float[]? F { get; }
        public float[] GainOut { get; }
        public float[] BiasOut { get; }
        public float[] GainIn { get; }
        public float[] BiasIn { get; }
        public float[] Dy { get; }
        public float[] Dz { get; }
        public float[][] InitialParameterGradients { get; }

        public Dictionary<string, float[]> Run(IDevice device)
        {
            bool layer = _options.Kind == NormKind.Layer;
            var shape = new TensorShape(_rows, _hidden);
            var rowsShape = new TensorShape(_rows);
            var vector = new TensorShape(_hidden);
            var buffers = new List<DeviceBuffer>();
            Tensor Upload(float[] values, DType dtype, TensorShape s) => Keep(DeviceData.Upload(device, values, dtype, s));
            Tensor Poisoned(bool present, DType dtype, TensorShape s) => present ? Keep(DeviceData.Poisoned(device, dtype, s)) : default;
            Tensor Optional(float[] values, TensorShape s) => values.Length == 0 ? default : Upload(values, DType.Float32, s);
            Tensor Keep(DeviceBuffer buffer)
            {
                buffers.Add(buffer);
                return buffer;
            }

            try
            {
                var x = Upload(X, DType.Float32, shape);
                var f = F is null ? default : Upload(F, _fType!.Value, shape);
                var outNorm = new NormWeights(Optional(GainOut, vector), Optional(BiasOut, vector));
                var inNorm = new NormWeights(Optional(GainIn, vector), Optional(BiasIn, vector));
                var y = Poisoned(true, DType.Float32, shape);
                var z = Poisoned(_withZ, DType.BFloat16, shape);
                var statistics = new NormStatistics(Poisoned(_options.OutputNorm && layer, DType.Float32, rowsShape), Poisoned(_options.OutputNorm, DType.Float32, rowsShape),
                                                    Poisoned(_options.InputNorm && layer, DType.Float32, rowsShape), Poisoned(_options.InputNorm, DType.Float32, rowsShape));
                device.ResidualNormForward(_options, x, f, outNorm, inNorm, y, z, statistics);

                var dy = Optional(Dy, shape);
                var dz = Dz.Length == 0 ? default : Upload(Dz, DType.BFloat16, shape);
                var dx = Poisoned(true, DType.Float32, shape);
                var df = Poisoned(F is not null, _fType ?? DType.Float32, shape);
                var initial = InitialParameterGradients;
                var outGradients = new NormWeights(Optional(initial[0], vector), Optional(initial[1], vector));
                var inGradients = new NormWeights(Optional(initial[2], vector), Optional(initial[3], vector));
                device.ResidualNormBackward(_options, x, f, y, outNorm, inNorm, statistics, dy, dz, dx, df, outGradients, inGradients);

                var results = new Dictionary<string, float[]>();
                void Add(string name, Tensor tensor)
                {
                    if (!tensor.IsEmpty) results[name] = DeviceData.Download(device, tensor);
                }
                Add("y", y);
                Add("z", z);
                Add("meanOut", statistics.MeanOut);
                Add("rstdOut", statistics.RstdOut);
                Add("meanIn", statistics.MeanIn);
                Add("rstdIn", statistics.RstdIn);
                Add("dx", dx);
                Add("df", df);
                Add("dGainOut", outGradients.Gain);
                Add("dBiasOut", outGradients.Bias);
                Add("dGainIn", inGradients.Gain);
                Add("dBiasIn", inGradients.Bias);
                return results;
            }
            finally
            {
                foreach (var buffer in buffers) buffer.Dispose();
            }
        }

        /// <summary>L = Σ y ⊙ dy + Σ z ⊙ dz by the fp64 reference, with input <paramref name="input"/> moved by h·direction.</summary>
        public double ReferenceLoss(string input, float[] direction, double h)
        {
            double[] D(float[] values, string name) =>
                values.Select((v, i) => v + (name == input ? h * direction[i] : 0)).ToArray();
            int n = _rows * _hidden;
            double[] y = new double[n], z = _options.InputNorm ? new double[n] : [];
            bool layer = _options.Kind == NormKind.Layer;
            double[] Stat(bool present) => present ? new double[_rows] : [];
            ResidualNorm.Forward<double>(_options, _rows, _hidden, D(X, "x"), F is null ? [] : D(F, "f"),
                D(GainOut, "gainOut"), D(BiasOut, "biasOut"), D(GainIn, "gainIn"), D(BiasIn, "biasIn"), y, z,
                Stat(_options.OutputNorm && layer), Stat(_options.OutputNorm), Stat(_options.InputNorm && layer), Stat(_options.InputNorm));
            // Without N_in, z is y itself (rounded to bf16 on the device; its derivative is y's).
            var zValues = _options.InputNorm ? z : y;
            double loss = 0;
            for (var i = 0; i < n; i++) loss += (Dy.Length > 0 ? y[i] * Dy[i] : 0) + (Dz.Length > 0 ? zValues[i] * Dz[i] : 0);
            return loss;
        }

        private static float[] Around1(Random rng, int count) => DeviceData.Random(rng, count, 0.3).Select(v => 1 + v).ToArray();

        /// <summary>Values rounded to the tensor's type, so both devices see exactly the same inputs.</summary>
        private static float[] Representable(float[] values, DType dtype) =>
            dtype == DType.BFloat16 ? Array.ConvertAll(values, BFloat16.Round) : values;
    }
}
