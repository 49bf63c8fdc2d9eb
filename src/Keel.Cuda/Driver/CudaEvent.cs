namespace Keel.Cuda.Driver;

/// <summary>An event: a marker recorded on a stream, for timing and cross-stream ordering (<c>cuEventCreate</c>).</summary>
public sealed class CudaEvent : CudaHandle
{
    private const uint DisableTimingFlag = 0x2; // CU_EVENT_DISABLE_TIMING
    private readonly CudaContext _context;

    private CudaEvent(CudaContext context, IntPtr evt, bool timing)
    {
        _context = context;
        HasTiming = timing;
        SetHandle(evt);
    }

    /// <summary>True when the event records time stamps and can be passed to <see cref="ElapsedMilliseconds"/>.</summary>
    public bool HasTiming { get; }

    /// <inheritdoc />
    protected override string Description => "CUDA event";

    /// <summary>The raw <c>CUevent</c>, for calls that take one.</summary>
    internal IntPtr Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsClosed, this);
            return handle;
        }
    }

    /// <summary>Creates an event in <paramref name="context"/>; <paramref name="timing"/> = false makes a lighter one for ordering only.</summary>
    public static CudaEvent Create(CudaContext context, bool timing = true)
    {
        ArgumentNullException.ThrowIfNull(context);
        context.AddDependent();
        try
        {
            context.Bind();
            CudaDriverNative.Check(CudaDriverNative.cuEventCreate(out var evt, timing ? 0 : DisableTimingFlag), "cuEventCreate");
            return new CudaEvent(context, evt, timing);
        }
        catch
        {
            context.RemoveDependent();
            throw;
        }
    }

    /// <summary>Records the event at the current end of <paramref name="stream"/>'s queue.</summary>
    public void Record(CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        CudaDriverNative.Check(CudaDriverNative.cuEventRecord(Handle, stream.Handle), "cuEventRecord");
    }

    /// <summary>Blocks until the work before the last <see cref="Record"/> has finished.</summary>
    public void Synchronize() => CudaDriverNative.Check(CudaDriverNative.cuEventSynchronize(Handle), "cuEventSynchronize");

    /// <summary>The time in milliseconds between two recorded, completed timing events (resolution about 0.5 µs).</summary>
    /// <exception cref="ArgumentException">Either event was created without timing.</exception>
    public static float ElapsedMilliseconds(CudaEvent start, CudaEvent end)
    {
        ArgumentNullException.ThrowIfNull(start);
        ArgumentNullException.ThrowIfNull(end);
        if (!start.HasTiming) throw new ArgumentException("the event was created without timing.", nameof(start));
        if (!end.HasTiming) throw new ArgumentException("the event was created without timing.", nameof(end));
        CudaDriverNative.Check(CudaDriverNative.cuEventElapsedTime(out var milliseconds, start.Handle, end.Handle), "cuEventElapsedTime");
        return milliseconds;
    }

    /// <inheritdoc />
    protected override bool ReleaseHandle()
    {
        var destroyed = CudaDriverNative.cuCtxSetCurrent(_context.Handle) == CudaDriverNative.CUDA_SUCCESS
                        && CudaDriverNative.cuEventDestroy(handle) == CudaDriverNative.CUDA_SUCCESS;
        _context.RemoveDependent();
        return destroyed;
    }
}
