using System.Globalization;
using Keel.Native.Devices;
using Keel.Native.Numerics;
using Keel.Native.Reference;

namespace Keel.Cli.Commands.Bench;

/// <summary>
/// <c>keel bench norm</c>: the fused residual norm of Keel's general sub-layer (kernels/residual_norm.cu with
/// RMSNorm out and in, alpha = L = 1024, fp32 x and y, bf16 f, z, dz and df), forward and backward, for each
/// <c>ROWSxHIDDEN</c> case. Bytes are those the kernels must move, as the kernel file counts them; the
/// backward's time includes its gain-gradient finalize. The PyTorch baseline computes the same function.
/// </summary>
internal sealed class NormSuite : IBenchmarkSuite
{
    /// <summary>The cases run without <c>--shape</c> (perf/baselines/residual_norm.py has the same defaults).</summary>
    private static readonly string[] DefaultShapes = ["16384x1024", "8192x4096"];

    private const float Alpha = 1024f;

    public string Name => "norm";

    public string Description => "fused Keel residual norm forward and backward: RMSNorm, fp32 x, bf16 f and z; shapes ROWSxHIDDEN";

    public string? BaselineScript => "residual_norm.py";

    public void Run(BenchContext context, BenchReport report)
    {
        var cases = (context.Shapes.Count > 0 ? context.Shapes : DefaultShapes).Select(Parse).ToList();
        foreach (var (rows, hidden) in cases) Measure(context, report, rows, hidden);
    }

    /// <summary><c>ROWSxHIDDEN</c>, such as <c>16384x1024</c>.</summary>
    /// <exception cref="ArgumentException">The text is not two positive integers joined by x.</exception>
    internal static (int Rows, int Hidden) Parse(string shape)
    {
        var parts = shape.Split('x');
        if (parts.Length == 2
            && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var rows) && rows > 0
            && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var hidden) && hidden > 0)
            return (rows, hidden);
        throw new ArgumentException($"Shape '{shape}' is not ROWSxHIDDEN (for example 16384x1024).", nameof(shape));
    }

    /// <summary>Bytes the forward must move: x 4 + f 2 read, y 4 + z 2 written per element; two gains; two statistics per row.</summary>
    internal static double ForwardBytes(long rows, long hidden) => 12.0 * rows * hidden + 2 * 4.0 * hidden + 2 * 4.0 * rows;

    /// <summary>
    /// Bytes the backward must move: x 4, f 2, y 4, dy 4, dz 2 read and dx 4, df 2 written per element; two gains
    /// read, two gain gradients read and written; two statistics per row.
    /// </summary>
    internal static double BackwardBytes(long rows, long hidden) => 22.0 * rows * hidden + (2 + 4) * 4.0 * hidden + 2 * 4.0 * rows;

    private static void Measure(BenchContext context, BenchReport report, int rows, int hidden)
    {
        var device = context.Device;
        var options = new ResidualNormOptions(NormKind.Rms, Alpha, OutputNorm: true, InputNorm: true);
        var shape = new TensorShape(rows, hidden);
        var vector = new TensorShape(hidden);
        // Every tensor of one forward + backward: 24 bytes per element; enough sets that a rotation misses L2.
        var setCount = context.RotationSets(24L * rows * hidden);
        var buffers = new List<DeviceBuffer>();
        Tensor Allocate(DType dtype, TensorShape s)
        {
            var buffer = device.Allocate(dtype, s);
            buffers.Add(buffer);
            return buffer;
        }
        Tensor Random(DType dtype, TensorShape s, int seed, double scale = 1)
        {
            var tensor = Allocate(dtype, s);
            context.FillRandom(tensor, scale, seed);
            return tensor;
        }

        try
        {
            var outNorm = new NormWeights(Random(DType.Float32, vector, 1, 0.5), default);
            var inNorm = new NormWeights(Random(DType.Float32, vector, 2, 0.5), default);
            var outGradients = new NormWeights(Random(DType.Float32, vector, 3), default);
            var inGradients = new NormWeights(Random(DType.Float32, vector, 4), default);
            var sets = new Set[setCount];
            for (var i = 0; i < sets.Length; i++)
            {
                var seed = 10 * (i + 1);
                sets[i] = new Set(Random(DType.Float32, shape, seed), Random(DType.BFloat16, shape, seed + 1),
                    Allocate(DType.Float32, shape), Allocate(DType.BFloat16, shape),
                    new NormStatistics(default, Allocate(DType.Float32, new TensorShape(rows)), default, Allocate(DType.Float32, new TensorShape(rows))),
                    Random(DType.Float32, shape, seed + 2), Random(DType.BFloat16, shape, seed + 3),
                    Allocate(DType.Float32, shape), Allocate(DType.BFloat16, shape));
            }

            void Forward(Set s) => device.ResidualNormForward(options, s.X, s.F, outNorm, inNorm, s.Y, s.Z, s.Statistics);
            void Backward(Set s) => device.ResidualNormBackward(options, s.X, s.F, s.Y, outNorm, inNorm, s.Statistics, s.Dy, s.Dz, s.Dx, s.Df,
                                                               outGradients, inGradients);
            // Backward reads forward's y and statistics: give every set its forward before timing.
            foreach (var set in sets) Forward(set);
            var forward = context.MedianMicroseconds(i => Forward(sets[i % sets.Length]));
            var backward = context.MedianMicroseconds(i => Backward(sets[i % sets.Length]));
            device.Synchronize();

            var name = $"{rows}x{hidden}";
            report.Add(new BenchResult(name, "forward", forward, ForwardBytes(rows, hidden), 0));
            report.Add(new BenchResult(name, "backward", backward, BackwardBytes(rows, hidden), 0));
            context.Log.WriteLine($"norm {name}: forward {forward:F1} µs, backward {backward:F1} µs ({setCount} input sets)");
        }
        finally
        {
            foreach (var buffer in buffers) buffer.Dispose();
        }
    }

    /// <summary>One input set and its outputs.</summary>
    private sealed record Set(Tensor X, Tensor F, Tensor Y, Tensor Z, NormStatistics Statistics, Tensor Dy, Tensor Dz, Tensor Dx, Tensor Df);
}
