using Keel.Cuda.Driver;
using Keel.Native.Devices;
using Keel.Native.Devices.Cuda;
using Keel.Native.Numerics;

namespace Keel.Cli.Commands.Bench;

/// <summary>
/// What a benchmark suite measures with: the GPU, the timing discipline of docs/measuring.md (CUDA events around
/// the work, warm-up first, median of many runs) and the device's two measured ceilings, each measured once.
/// </summary>
internal sealed class BenchContext(CudaDevice device, BenchOptions options, TextWriter log)
{
    private (double CopyGBps, double GemmTflops)? _ceilings;

    public CudaDevice Device { get; } = device;

    public TextWriter Log { get; } = log;

    /// <summary>Shapes given with <c>--shape</c> (empty: the suite's defaults).</summary>
    public IReadOnlyList<string> Shapes { get; } = options.Shapes.ToList();

    public int Repeats { get; } = options.Repeats;

    public int Warmup { get; } = options.Warmup;

    /// <summary>
    /// The median of <see cref="Repeats"/> timed runs of <paramref name="work"/>, in microseconds, after
    /// <see cref="Warmup"/> untimed ones. The run index is passed so that the work can rotate through input
    /// sets larger than the L2 cache, as real training does.
    /// </summary>
    public double MedianMicroseconds(Action<int> work)
    {
        for (var i = 0; i < Warmup; i++) work(i);
        using var start = Device.CreateEvent();
        using var end = Device.CreateEvent();
        var times = new double[Repeats];
        for (var i = 0; i < Repeats; i++)
        {
            start.Record(Device.Stream);
            work(Warmup + i);
            end.Record(Device.Stream);
            end.Synchronize();
            times[i] = CudaEvent.ElapsedMilliseconds(start, end) * 1000.0;
        }
        Array.Sort(times);
        return times[times.Length / 2];
    }

    /// <summary>How many input sets of <paramref name="bytesPerSet"/> bytes keep a rotation out of the L2 cache (at least 2).</summary>
    public int RotationSets(long bytesPerSet) =>
        (int)Math.Clamp(4L * Device.Info.L2CacheBytes / Math.Max(1, bytesPerSet) + 1, 2, 16);

    /// <summary>Device-to-device copy bandwidth (bytes read plus written, GB/s) and bf16 cuBLAS GEMM rate (TFLOP/s), measured once.</summary>
    public (double CopyGBps, double GemmTflops) Ceilings => _ceilings ??= MeasureCeilings();

    private (double, double) MeasureCeilings()
    {
        const long CopyBytes = 1L << 30;
        using var source = Device.Allocate(DType.Float32, new TensorShape(CopyBytes / 4));
        using var destination = Device.Allocate(DType.Float32, new TensorShape(CopyBytes / 4));
        Device.Clear(source);
        var copy = MedianMicroseconds(_ => Device.Copy(source, destination));
        var copyGBps = 2.0 * CopyBytes / (copy * 1e-6) / 1e9;

        const int N = 8192;
        using var a = Device.Allocate(DType.BFloat16, new TensorShape(N, N));
        using var b = Device.Allocate(DType.BFloat16, new TensorShape(N, N));
        using var c = Device.Allocate(DType.BFloat16, new TensorShape(N, N));
        FillRandom(a);
        FillRandom(b);
        var gemm = MedianMicroseconds(_ => Device.Gemm(a, false, b, true, c));
        var tflops = 2.0 * N * N * (double)N / (gemm * 1e-6) / 1e12;
        Log.WriteLine($"ceilings: device-to-device copy {copyGBps:F0} GB/s, bf16 GEMM {N}^3 {tflops:F0} TFLOP/s");
        return (copyGBps, tflops);
    }

    /// <summary>Fills a tensor with random values (never zeros: they run faster than real data on some units).</summary>
    public void FillRandom(Tensor tensor, double scale = 1, int seed = 1)
    {
        var rng = new Random(seed);
        var values = new float[tensor.Length];
        for (var i = 0; i < values.Length; i++) values[i] = (float)((rng.NextDouble() * 2 - 1) * scale);
        switch (tensor.DType)
        {
            case DType.Float32: Device.CopyFromHost<float>(values, tensor); break;
            case DType.BFloat16: Device.CopyFromHost<BFloat16>(Array.ConvertAll(values, BFloat16.FromSingle), tensor); break;
            default: throw new ArgumentException($"Cannot fill {tensor.DType} with random values.", nameof(tensor));
        }
    }
}
