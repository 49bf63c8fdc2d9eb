namespace Keel.Cuda.Driver;

/// <summary>How strictly the driver guards a stream capture against calls that cannot be captured (<c>CUstreamCaptureMode</c>).</summary>
public enum StreamCaptureMode
{
    /// <summary>Unsafe calls (such as <c>cuMemAlloc</c>) fail on every thread while any global capture is under way.</summary>
    Global = 0,
    /// <summary>Unsafe calls fail only on the capturing thread.</summary>
    ThreadLocal = 1,
    /// <summary>No call is refused; the caller guarantees none interferes.</summary>
    Relaxed = 2,
}

/// <summary>
/// A graph of device work recorded from a stream (<c>CUgraph</c>), destroyed on <see cref="IDisposable.Dispose"/>.
/// Record with <see cref="BeginCapture"/> ... <see cref="EndCapture"/>, then <see cref="Instantiate"/> once and launch
/// the executable graph as often as needed: each replay runs the recorded kernels with the recorded arguments.
/// </summary>
public sealed class CudaGraph : CudaHandle
{
    private readonly CudaContext _context;

    private CudaGraph(CudaContext context, IntPtr graph)
    {
        _context = context;
        SetHandle(graph);
    }

    /// <inheritdoc />
    protected override string Description => "CUDA graph";

    /// <summary>
    /// Starts recording <paramref name="stream"/>: work queued on it from now on is captured into a graph instead of run.
    /// The stream must not be the legacy default stream (no <see cref="CudaStream"/> is).
    /// </summary>
    public static void BeginCapture(CudaStream stream, StreamCaptureMode mode)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (!Enum.IsDefined(mode)) throw new ArgumentOutOfRangeException(nameof(mode), mode, null);
        CudaDriverNative.Check(CudaDriverNative.cuStreamBeginCapture(stream.Handle, (int)mode), "cuStreamBeginCapture");
    }

    /// <summary>Stops recording <paramref name="stream"/> and returns what was captured.</summary>
    /// <exception cref="CudaException">The capture was invalidated by an unsupported call (for example CUDA_ERROR_STREAM_CAPTURE_INVALIDATED).</exception>
    public static CudaGraph EndCapture(CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var context = stream.Context;
        context.AddDependent();
        try
        {
            CudaDriverNative.Check(CudaDriverNative.cuStreamEndCapture(stream.Handle, out var graph), "cuStreamEndCapture");
            return new CudaGraph(context, graph);
        }
        catch
        {
            context.RemoveDependent();
            throw;
        }
    }

    /// <summary>Builds the executable form of the graph; the graph itself may be disposed afterwards.</summary>
    public CudaGraphExec Instantiate()
    {
        ObjectDisposedException.ThrowIf(IsClosed, this);
        _context.AddDependent();
        try
        {
            _context.Bind();
            CudaDriverNative.Check(CudaDriverNative.cuGraphInstantiateWithFlags(out var exec, handle, 0), "cuGraphInstantiateWithFlags");
            return new CudaGraphExec(_context, exec);
        }
        catch
        {
            _context.RemoveDependent();
            throw;
        }
    }

    /// <inheritdoc />
    protected override bool ReleaseHandle()
    {
        var destroyed = CudaDriverNative.cuCtxSetCurrent(_context.Handle) == CudaDriverNative.CUDA_SUCCESS
                        && CudaDriverNative.cuGraphDestroy(handle) == CudaDriverNative.CUDA_SUCCESS;
        _context.RemoveDependent();
        return destroyed;
    }
}

/// <summary>An instantiated, launchable graph (<c>CUgraphExec</c>), destroyed on <see cref="IDisposable.Dispose"/>.</summary>
public sealed class CudaGraphExec : CudaHandle
{
    private readonly CudaContext _context;

    internal CudaGraphExec(CudaContext context, IntPtr exec)
    {
        _context = context;
        SetHandle(exec);
    }

    /// <inheritdoc />
    protected override string Description => "instantiated CUDA graph";

    /// <summary>Queues one replay of the whole graph on <paramref name="stream"/>. The context must be current on this thread.</summary>
    public void Launch(CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ObjectDisposedException.ThrowIf(IsClosed, this);
        CudaDriverNative.Check(CudaDriverNative.cuGraphLaunch(handle, stream.Handle), "cuGraphLaunch");
    }

    /// <inheritdoc />
    protected override bool ReleaseHandle()
    {
        var destroyed = CudaDriverNative.cuCtxSetCurrent(_context.Handle) == CudaDriverNative.CUDA_SUCCESS
                        && CudaDriverNative.cuGraphExecDestroy(handle) == CudaDriverNative.CUDA_SUCCESS;
        _context.RemoveDependent();
        return destroyed;
    }
}
