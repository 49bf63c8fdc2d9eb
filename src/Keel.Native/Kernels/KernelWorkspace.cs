using System.Runtime.InteropServices;
using Keel.Native.Devices;
using Keel.Native.Numerics;

namespace Keel.Native.Kernels;

/// <summary>The scratch buffers kernel launchers use, one of each kind per device (<see cref="KernelWorkspace"/>).</summary>
public enum KernelScratch
{
    /// <summary>The global gradient norm's per-block partial sums (<c>OptimizerKernels</c>).</summary>
    GradientNormPartials,

    /// <summary>The embedding's error word: how many token ids were out of range, and the first one; all zeros when none.</summary>
    TokenErrors,

    /// <summary>The embedding backward's sort keys and tile partial sums.</summary>
    EmbeddingSort,

    /// <summary>The residual-norm backward's per-block gain and bias gradient sums.</summary>
    ResidualNormPartials,

    /// <summary>The attention backward's fp32 dq sums, row statistics (logsumexp and dO·o), dq order counters and key-block tickets.</summary>
    AttentionBackward,

    /// <summary>RoPE's (cos, sin) table.</summary>
    RopeTable,
}

/// <summary>
/// The kernel launchers' scratch on one device: one buffer per <see cref="KernelScratch"/>, owned here and lent to the
/// launchers, which <see cref="KernelDevice"/> builds with it. A launcher asks for what a call needs (<see cref="Get"/>)
/// after checking the call's arguments; a buffer too small is replaced by a larger one after the work queued on it has
/// finished, and kept. A model reserves what its memory plan counted (<see cref="Reserve"/>, through
/// <see cref="IDevice.ReserveScratch"/>) before its first step, so steps allocate nothing.
/// <para>
/// A CUDA graph keeps the addresses its kernels were captured with. While a capture runs (<see cref="RunFrozen"/>) nothing
/// is allocated, and while a captured graph is open (<see cref="FreezeWhileOpen"/>) no buffer is replaced: a call that
/// needs more than was reserved throws <see cref="InvalidOperationException"/> naming the buffer, instead of leaving the
/// graph to write into freed memory.
/// </para>
/// </summary>
public sealed class KernelWorkspace : IDisposable
{
    private static readonly int Count = Enum.GetValues<KernelScratch>().Length;
    private readonly Func<long, DeviceBuffer> _allocate;
    private readonly Action<Tensor> _clear;
    private readonly Action _waitForQueuedWork;
    private readonly DeviceBuffer?[] _buffers = new DeviceBuffer?[Count];
    private readonly int[] _generations = new int[Count];
    private readonly List<SafeHandle> _graphs = [];
    private int _captures;

    /// <summary>
    /// Keeps scratch that <paramref name="allocate"/> provides (at least the bytes asked, 16-byte aligned),
    /// <paramref name="clear"/> zeroes where a buffer's contents must start at zero (<see cref="KernelScratch.TokenErrors"/>),
    /// and frees only after <paramref name="waitForQueuedWork"/> returns.
    /// </summary>
    public KernelWorkspace(Func<long, DeviceBuffer> allocate, Action<Tensor> clear, Action waitForQueuedWork)
    {
        ArgumentNullException.ThrowIfNull(allocate);
        ArgumentNullException.ThrowIfNull(clear);
        ArgumentNullException.ThrowIfNull(waitForQueuedWork);
        _allocate = allocate;
        _clear = clear;
        _waitForQueuedWork = waitForQueuedWork;
    }

    /// <summary>What <paramref name="scratch"/> holds, as memory plans and messages name it.</summary>
    public static string Describe(KernelScratch scratch) => scratch switch
    {
        KernelScratch.GradientNormPartials => "gradient-norm partial sums",
        KernelScratch.TokenErrors => "embedding token check",
        KernelScratch.EmbeddingSort => "embedding backward sort",
        KernelScratch.ResidualNormPartials => "residual-norm gain partial sums",
        KernelScratch.AttentionBackward => "attention backward workspace",
        KernelScratch.RopeTable => "RoPE cos/sin table",
        _ => throw new ArgumentOutOfRangeException(nameof(scratch), scratch, "Unknown scratch buffer."),
    };

    /// <summary>Bytes <paramref name="scratch"/> holds now (0 before its first use).</summary>
    public long Bytes(KernelScratch scratch) => _buffers[Index(scratch)]?.Tensor.ByteLength ?? 0;

    /// <summary>Counts the buffers <paramref name="scratch"/> has had: a launcher that keeps contents there (a table) rebuilds them when it changes.</summary>
    public int Generation(KernelScratch scratch) => _generations[Index(scratch)];

    /// <summary>True while buffers cannot be replaced: a capture is running or a captured graph is open.</summary>
    public bool IsFrozen => FrozenBy(replacing: true) is not null;

    /// <summary>Makes <paramref name="scratch"/> hold at least <paramref name="bytes"/> now, rather than at the first call that needs them.</summary>
    /// <exception cref="InvalidOperationException">It holds less and cannot be replaced now (<see cref="IsFrozen"/>).</exception>
    public void Reserve(KernelScratch scratch, long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        if (bytes > 0) Ensure(scratch, bytes);
    }

    /// <summary>
    /// <paramref name="scratch"/> viewed as <paramref name="elements"/> elements of <paramref name="dtype"/> from its start,
    /// replacing the buffer by a larger one first when it is too small (contents are then undefined, or zero for
    /// <see cref="KernelScratch.TokenErrors"/>). Call it after the call's arguments are checked.
    /// </summary>
    /// <exception cref="InvalidOperationException">The buffer is too small and cannot be replaced now (<see cref="IsFrozen"/>).</exception>
    public Tensor Get(KernelScratch scratch, DType dtype, long elements)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(elements);
        if (elements == 0) return default;
        var buffer = Ensure(scratch, elements * dtype.SizeOf());
        return new Tensor(buffer.Address, dtype, new TensorShape(elements));
    }

    /// <summary><paramref name="scratch"/> as it is (Int32 elements), or an empty tensor before its first use; never allocates.</summary>
    public Tensor Find(KernelScratch scratch) => _buffers[Index(scratch)]?.Tensor ?? default;

    /// <summary>Runs <paramref name="work"/> (a CUDA graph capture) with every buffer where it is: growth inside throws.</summary>
    public void RunFrozen(Action work)
    {
        ArgumentNullException.ThrowIfNull(work);
        _captures++;
        try
        {
            work();
        }
        finally
        {
            _captures--;
        }
    }

    /// <summary>Keeps every buffer where it is until <paramref name="graph"/> (an executable CUDA graph captured with their addresses) is disposed.</summary>
    public void FreezeWhileOpen(SafeHandle graph)
    {
        ArgumentNullException.ThrowIfNull(graph);
        _graphs.RemoveAll(static g => g.IsClosed);
        _graphs.Add(graph);
    }

    /// <summary>Frees every buffer; the device must have finished the work that uses them.</summary>
    public void Dispose()
    {
        for (var i = 0; i < _buffers.Length; i++)
        {
            _buffers[i]?.Dispose();
            _buffers[i] = null;
        }
    }

    private Tensor Ensure(KernelScratch scratch, long bytes)
    {
        var index = Index(scratch);
        var buffer = _buffers[index];
        if (buffer is not null && buffer.Tensor.ByteLength >= bytes) return buffer.Tensor;
        // An open graph holds the addresses of buffers that exist; while a capture runs nothing may be allocated at all.
        if (FrozenBy(replacing: buffer is not null) is { } why)
            throw new InvalidOperationException(
                $"The kernels' {Describe(scratch)} holds {Bytes(scratch)} bytes and this call needs {bytes}; it cannot be replaced while {why}, " +
                "whose kernels keep its address. Reserve it first (IDevice.ReserveScratch; a KeelModel reserves what its memory plan counts), " +
                "or dispose the graph and capture again.");
        if (buffer is not null)
        {
            // Kernels queued earlier may still read or write the old buffer.
            _waitForQueuedWork();
            buffer.Dispose();
            _buffers[index] = null;
        }
        buffer = _allocate(bytes);
        var tensor = buffer.Tensor;
        if (tensor.ByteLength < bytes || !tensor.IsAligned(16))
        {
            buffer.Dispose();
            throw new InvalidOperationException($"The scratch allocator returned {tensor}; {bytes} bytes, 16-byte aligned, were asked for.");
        }
        if (scratch == KernelScratch.TokenErrors) _clear(buffer);
        _buffers[index] = buffer;
        _generations[index]++;
        return tensor;
    }

    private string? FrozenBy(bool replacing)
    {
        if (_captures > 0) return "a CUDA graph capture is running";
        if (!replacing) return null;
        foreach (var graph in _graphs)
            if (!graph.IsClosed) return "a captured CUDA graph is open";
        return null;
    }

    private static int Index(KernelScratch scratch) =>
        (uint)scratch < (uint)Count ? (int)scratch : throw new ArgumentOutOfRangeException(nameof(scratch), scratch, "Unknown scratch buffer.");
}
