using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Keel.Cli.Output;
using Keel.Cuda.Driver;
using Keel.Distributed.Mpi;
using Keel.Native.Devices;
using Keel.Native.Devices.Cpu;
using Keel.Native.Devices.Cuda;
using Keel.Native.Distributed;
using Keel.Native.Memory;
using Keel.Native.Numerics;

namespace Keel.Cli.Commands.Bench;

/// <summary>
/// <c>keel bench collectives</c>: the three collectives of data-parallel training (all-reduce in place, reduce-scatter and
/// all-gather into the own block, on fp32 buffers) over the ranks of the job (<c>mpirun -np N keel bench collectives</c>;
/// alone, one rank). On GPUs through NCCL, each rank on the GPU of its local rank, timed with CUDA events on its stream;
/// with <c>--host</c> through MPI over host memory, timed with the host clock after a barrier. A case's time is the median
/// over the repeats of the slowest rank's time.
/// <para>
/// Bandwidths follow the nccl-tests convention: the size is the whole buffer (all-reduce: the buffer reduced; reduce-scatter:
/// the send buffer; all-gather: the receive buffer), algbw = size / time, and busbw = algbw · 2(n − 1)/n for all-reduce and
/// algbw · (n − 1)/n for the other two, the rate each rank's links carry in a ring; with one rank busbw is 0.
/// </para>
/// </summary>
internal static class CollectivesBench
{
    public const string Name = "collectives";

    public const string Description = "NCCL all-reduce, reduce-scatter and all-gather bus bandwidth over the job's GPUs (--host: MPI over host memory); sizes like 1MiB";

    private static readonly string[] DefaultGpuSizes = ["1MiB", "16MiB", "256MiB", "1GiB"];
    private static readonly string[] DefaultHostSizes = ["64KiB", "1MiB", "16MiB", "64MiB"];

    internal enum Operation { AllReduce, ReduceScatter, AllGather }

    public static int Run(BenchOptions options, TextWriter output, TextWriter error)
    {
        var sizes = (options.Shapes.Any() ? options.Shapes : options.Host ? DefaultHostSizes : DefaultGpuSizes).Select(ParseSize).ToList();
        if (!options.Host && Gpus.WhyNone() is { } reason)
        {
            output.WriteLine($"keel bench {Name}: no GPU here ({reason}); nothing to measure. (--host measures MPI over host memory.)");
            return 0;
        }
        // MPI when a launcher started the job, or always for host memory (one process initializes alone); one GPU rank needs none.
        using var session = options.Host || MpiSession.LaunchedBy() is not null ? MpiSession.Initialize() : null;
        IRankGroup ranks = session is null ? SingleRank.Instance : new MpiRankGroup(session.World);
        using IDevice device = options.Host ? new CpuDevice() : CudaDevice.Open(session?.LocalRank ?? options.Device);
        using ICollectives collectives = options.Host ? new MpiCollectives(session!.World, device) : new NcclCollectives(ranks, device);
        var primary = ranks.Rank == 0;
        var log = primary ? output : TextWriter.Null;
        log.WriteLine($"keel bench {Name}: {ranks.Size} rank(s), {collectives.Description}, rank 0 on {device.Name}; {options.Repeats} timed runs per case after {options.Warmup} warm-up runs");

        var results = new List<(Operation Op, long Bytes, double Microseconds)>();
        var largest = sizes.Max();
        using var send = device.Allocate(DType.Float32, new TensorShape(largest / sizeof(float)));
        using var receive = device.Allocate(DType.Float32, new TensorShape(largest / sizeof(float)));
        device.Clear(send);
        device.Clear(receive);
        foreach (var bytes in sizes)
        {
            // Whole elements, and for the sharded collectives a block per rank.
            var count = bytes / sizeof(float) / ranks.Size * ranks.Size;
            var block = count / ranks.Size;
            foreach (var op in Enum.GetValues<Operation>())
            {
                Action work = op switch
                {
                    Operation.AllReduce => () => collectives.AllReduceSum(send.Tensor.Slice(0, count)),
                    Operation.ReduceScatter => () => collectives.ReduceScatterSum(send.Tensor.Slice(0, count), receive.Tensor.Slice(0, block)),
                    _ => () => collectives.AllGather(receive.Tensor.Slice(ranks.Rank * block, block), receive.Tensor.Slice(0, count)),
                };
                results.Add((op, count * sizeof(float), Median(options, device, collectives, ranks, work)));
            }
        }

        if (!primary) return 0;
        var report = Report(results, ranks.Size, collectives.Description, device.Name);
        output.Write(report);
        var folder = options.OutputFolder ?? BenchCommand.ResultsFolder();
        Directory.CreateDirectory(folder);
        var stem = Path.Combine(folder, $"{Name}-{DateTimeOffset.UtcNow:yyyyMMdd-HHmmss}");
        var json = new
        {
            suite = Name, ranks = ranks.Size, transport = collectives.Description, device = device.Name, commit = BenchCommand.Commit(),
            date = DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture),
            results = results.Select(r => new
            {
                operation = OperationName(r.Op), bytes = r.Bytes, microseconds = r.Microseconds,
                algbw_gbps = AlgorithmBandwidth(r.Bytes, r.Microseconds), busbw_gbps = AlgorithmBandwidth(r.Bytes, r.Microseconds) * BusFactor(r.Op, ranks.Size),
            }),
        };
        File.WriteAllText(stem + ".json", JsonSerializer.Serialize(json, new JsonSerializerOptions { WriteIndented = true }));
        File.WriteAllText(stem + ".md", $"# keel bench {Name}{Environment.NewLine}{Environment.NewLine}```{Environment.NewLine}{report}```{Environment.NewLine}", Encoding.UTF8);
        output.WriteLine($"results: {stem}.json (and .md)");
        return 0;
    }

    /// <summary>algbw · this factor is busbw (nccl-tests): all-reduce 2(n − 1)/n, reduce-scatter and all-gather (n − 1)/n.</summary>
    internal static double BusFactor(Operation op, int ranks) => (op == Operation.AllReduce ? 2.0 : 1.0) * (ranks - 1) / ranks;

    private static double AlgorithmBandwidth(long bytes, double microseconds) => bytes / (microseconds * 1e-6) / 1e9;

    /// <summary>The median over the repeats of the slowest rank's time of <paramref name="work"/>, in microseconds.</summary>
    private static double Median(BenchOptions options, IDevice device, ICollectives collectives, IRankGroup ranks, Action work)
    {
        for (var i = 0; i < options.Warmup; i++) work();
        collectives.WaitForDevice();
        var times = new double[options.Repeats];
        if (device.NativeStream is { } stream)
        {
            // Events on the stream the collectives are queued on; the device was opened on this thread, so its context is current.
            using var start = CudaEvent.Create(stream.Context);
            using var end = CudaEvent.Create(stream.Context);
            for (var i = 0; i < times.Length; i++)
            {
                ranks.Barrier();
                start.Record(stream);
                work();
                end.Record(stream);
                collectives.WaitForDevice();
                times[i] = CudaEvent.ElapsedMilliseconds(start, end) * 1000.0;
            }
        }
        else
        {
            for (var i = 0; i < times.Length; i++)
            {
                ranks.Barrier();
                var started = Stopwatch.GetTimestamp();
                work();
                times[i] = Stopwatch.GetElapsedTime(started).TotalMicroseconds;
            }
        }
        var all = new double[times.Length * ranks.Size];
        ranks.AllGather(MemoryMarshal.AsBytes(times.AsSpan()), MemoryMarshal.AsBytes(all.AsSpan()));
        var slowest = Enumerable.Range(0, times.Length).Select(i => Enumerable.Range(0, ranks.Size).Max(r => all[r * times.Length + i])).Order().ToArray();
        return slowest[slowest.Length / 2];
    }

    private static string Report(List<(Operation Op, long Bytes, double Microseconds)> results, int ranks, string transport, string device)
    {
        var table = new TextTable("operation", "size", "µs", "algbw GB/s", "busbw GB/s").AlignRight("size", "µs", "algbw GB/s", "busbw GB/s");
        foreach (var (op, bytes, microseconds) in results)
        {
            var algbw = AlgorithmBandwidth(bytes, microseconds);
            table.Add(OperationName(op), ByteSize.Format(bytes), Math.Round(microseconds, 1), Math.Round(algbw, 2), Math.Round(algbw * BusFactor(op, ranks), 2));
        }
        var text = new StringWriter(CultureInfo.InvariantCulture);
        text.WriteLine($"{Name} over {ranks} rank(s), {transport}, rank 0 on {device}, commit {BenchCommand.Commit()}, {DateTimeOffset.UtcNow:yyyy-MM-dd}");
        table.Write(text);
        text.WriteLine("size: the whole buffer (nccl-tests); algbw = size / time; busbw = algbw · 2(n-1)/n (all-reduce) or (n-1)/n; fp32, in place.");
        return text.ToString();
    }

    private static string OperationName(Operation op) => op switch
    {
        Operation.AllReduce => "all-reduce",
        Operation.ReduceScatter => "reduce-scatter",
        _ => "all-gather",
    };

    private static long ParseSize(string text)
    {
        var bytes = ByteSize.Parse(text);
        return bytes >= sizeof(float) ? bytes : throw new ArgumentException($"Size '{text}' is smaller than one fp32 element.", nameof(BenchOptions.Shapes));
    }
}
