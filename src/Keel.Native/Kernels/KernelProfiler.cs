using System.Diagnostics;
using System.Globalization;
using Keel.Cuda.Driver;

namespace Keel.Native.Kernels;

/// <summary>What one launch must move and compute, for the achieved-bandwidth and throughput columns; 0 where unknown.</summary>
/// <param name="Bytes">Bytes the kernel must read and write at least.</param>
/// <param name="Flops">Floating-point operations it must do.</param>
public readonly record struct KernelCost(double Bytes, double Flops);

/// <summary>
/// Times kernel launches and device ops by name and adds up calls, time, bytes and FLOPs, for the table
/// <c>keel train --profile</c> prints. Timing brackets a launch: <see cref="Begin"/> before it is queued,
/// <see cref="End"/> after. <see cref="CudaEvents"/> records CUDA events on the stream (resolved at
/// <see cref="Flush"/>, so timing adds no synchronization inside a step); <see cref="WallClock"/> reads the
/// clock, right for synchronous devices. Nothing calls a profiler unless one was installed, so profiling off
/// costs one null check per launch (<see cref="KernelFunction.Launch"/>).
/// </summary>
public abstract class KernelProfiler : IDisposable
{
    private readonly Dictionary<string, Totals> _totals = new(StringComparer.Ordinal);

    /// <summary>A profiler that reads the host clock.</summary>
    public static KernelProfiler WallClock() => new WallClockProfiler();

    /// <summary>A profiler that records CUDA events on <paramref name="stream"/>.</summary>
    public static KernelProfiler CudaEvents(CudaStream stream) => new CudaEventProfiler(stream);

    /// <summary>Marks the start of a launch; returns a token for <see cref="End"/>.</summary>
    public abstract int Begin();

    /// <summary>Marks the end of the launch begun with <paramref name="token"/>.</summary>
    public abstract void End(int token, string name, in KernelCost cost);

    /// <summary>Resolves the timings recorded so far (waits for the device where timings are asynchronous).</summary>
    public abstract void Flush();

    /// <summary>Adds one timed call.</summary>
    protected void Add(string name, double milliseconds, in KernelCost cost)
    {
        if (!_totals.TryGetValue(name, out var totals)) _totals[name] = totals = new Totals();
        totals.Calls++;
        totals.Milliseconds += milliseconds;
        totals.Bytes += cost.Bytes;
        totals.Flops += cost.Flops;
    }

    /// <summary>
    /// Writes the table: per name, calls, total ms, % of <paramref name="totalMilliseconds"/> (the steps' wall
    /// time), and achieved GB/s and TFLOP/s where the cost was given; the slowest first.
    /// </summary>
    public void Write(TextWriter output, double totalMilliseconds)
    {
        ArgumentNullException.ThrowIfNull(output);
        Flush();
        var rows = _totals.OrderByDescending(t => t.Value.Milliseconds).ToList();
        var width = Math.Max(20, rows.Count == 0 ? 0 : rows.Max(r => r.Key.Length));
        var c = CultureInfo.InvariantCulture;
        output.WriteLine(string.Create(c, $"{"op".PadRight(width)}  {"calls",7}  {"total ms",10}  {"% step",6}  {"GB/s",8}  {"TFLOP/s",8}"));
        output.WriteLine(new string('-', width + 49));
        foreach (var (name, t) in rows)
        {
            var seconds = t.Milliseconds / 1e3;
            var bandwidth = t.Bytes > 0 && seconds > 0 ? (t.Bytes / seconds / 1e9).ToString("0.0", c) : "";
            var throughput = t.Flops > 0 && seconds > 0 ? (t.Flops / seconds / 1e12).ToString("0.000", c) : "";
            output.WriteLine(string.Create(c, $"{name.PadRight(width)}  {t.Calls,7}  {t.Milliseconds,10:0.0}  {100 * t.Milliseconds / totalMilliseconds,6:0.0}  {bandwidth,8}  {throughput,8}"));
        }
        var timed = rows.Sum(r => r.Value.Milliseconds);
        output.WriteLine(string.Create(c, $"{"(timed ops)".PadRight(width)}  {rows.Sum(r => r.Value.Calls),7}  {timed,10:0.0}  {100 * timed / totalMilliseconds,6:0.0}"));
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases timing resources.</summary>
    protected virtual void Dispose(bool disposing)
    {
    }

    private sealed class Totals
    {
        public long Calls;
        public double Milliseconds, Bytes, Flops;
    }

    private sealed class WallClockProfiler : KernelProfiler
    {
        private long _start;

        public override int Begin()
        {
            _start = Stopwatch.GetTimestamp();
            return 0;
        }

        public override void End(int token, string name, in KernelCost cost) =>
            Add(name, Stopwatch.GetElapsedTime(_start).TotalMilliseconds, cost);

        public override void Flush()
        {
        }
    }

    /// <summary>A pool of event pairs; when it runs out, or at <see cref="Flush"/>, the recorded pairs are read back.</summary>
    private sealed class CudaEventProfiler : KernelProfiler
    {
        private const int Pairs = 4096;
        private readonly CudaStream _stream;
        private readonly CudaEvent[] _starts = new CudaEvent[Pairs], _ends = new CudaEvent[Pairs];
        private readonly (string Name, KernelCost Cost)[] _pending = new (string, KernelCost)[Pairs];
        private int _used;

        public CudaEventProfiler(CudaStream stream)
        {
            _stream = stream;
            for (var i = 0; i < Pairs; i++)
            {
                _starts[i] = CudaEvent.Create(stream.Context);
                _ends[i] = CudaEvent.Create(stream.Context);
            }
        }

        public override int Begin()
        {
            if (_used == Pairs) Flush();
            // Before the launch binds it: the event record may be the calling thread's first driver call.
            Devices.Cuda.CudaDevice.BindContext(_stream.Context);
            _starts[_used].Record(_stream);
            return _used++;
        }

        public override void End(int token, string name, in KernelCost cost)
        {
            _ends[token].Record(_stream);
            _pending[token] = (name, cost);
        }

        public override void Flush()
        {
            if (_used == 0) return;
            _ends[_used - 1].Synchronize();
            for (var i = 0; i < _used; i++) Add(_pending[i].Name, CudaEvent.ElapsedMilliseconds(_starts[i], _ends[i]), _pending[i].Cost);
            _used = 0;
        }

        protected override void Dispose(bool disposing)
        {
            if (!disposing) return;
            foreach (var e in _starts) e.Dispose();
            foreach (var e in _ends) e.Dispose();
        }
    }
}
