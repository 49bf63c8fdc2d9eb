namespace Keel.Cuda.Driver;

/// <summary>An event: a marker recorded on a stream, for timing and cross-stream ordering (<c>cuEventCreate</c>).</summary>
public sealed class CudaEvent : ContextBoundHandle
{
    private const uint DisableTimingFlag = 0x2; // CU_EVENT_DISABLE_TIMING

    private CudaEvent(CudaContext context, bool timing) : base(context) => HasTiming = timing;

    /// <summary>True when the event records time stamps and can be passed to <see cref="ElapsedMilliseconds"/>.</summary>
    public bool HasTiming { get; }

    /// <inheritdoc />
    protected override string Description => "CUDA event";

    /// <summary>Creates an event in <paramref name="context"/>; <paramref name="timing"/> = false makes a lighter one for ordering only.</summary>
    public static CudaEvent Create(CudaContext context, bool timing = true)
    {
        ArgumentNullException.ThrowIfNull(context);
        context.MakeCurrent();
        var evt = new CudaEvent(context, timing);
        evt.Create(timing ? 0u : DisableTimingFlag,
                   static (flags, out handle) => CudaDriverNative.Check(CudaDriverNative.cuEventCreate(out handle, flags), "cuEventCreate"));
        return evt;
    }

    /// <summary>Records the event at the current end of <paramref name="stream"/>'s queue.</summary>
    public void Record(CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        CudaDriverNative.Check(CudaDriverNative.cuEventRecord(this, stream), "cuEventRecord");
    }

    /// <summary>Blocks until the work before the last <see cref="Record"/> has finished.</summary>
    public void Synchronize() => CudaDriverNative.Check(CudaDriverNative.cuEventSynchronize(this), "cuEventSynchronize");

    /// <summary>The time in milliseconds between two recorded, completed timing events (resolution about 0.5 µs).</summary>
    /// <exception cref="ArgumentException">Either event was created without timing.</exception>
    public static float ElapsedMilliseconds(CudaEvent start, CudaEvent end)
    {
        ArgumentNullException.ThrowIfNull(start);
        ArgumentNullException.ThrowIfNull(end);
        if (!start.HasTiming) throw new ArgumentException("the event was created without timing.", nameof(start));
        if (!end.HasTiming) throw new ArgumentException("the event was created without timing.", nameof(end));
        CudaDriverNative.Check(CudaDriverNative.cuEventElapsedTime(out var milliseconds, start, end), "cuEventElapsedTime");
        return milliseconds;
    }

    private protected override bool Destroy(IntPtr handle) => Released(CudaDriverNative.cuEventDestroy(handle), "cuEventDestroy");
}
