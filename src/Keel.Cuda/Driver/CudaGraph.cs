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
public sealed class CudaGraph : ContextBoundHandle
{
    private CudaGraph(CudaContext context) : base(context)
    {
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
        CudaDriverNative.Check(CudaDriverNative.cuStreamBeginCapture(stream, (int)mode), "cuStreamBeginCapture");
    }

    /// <summary>Stops recording <paramref name="stream"/> and returns what was captured.</summary>
    /// <exception cref="CudaException">The capture was invalidated by an unsupported call (for example CUDA_ERROR_STREAM_CAPTURE_INVALIDATED).</exception>
    public static CudaGraph EndCapture(CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        // No cuCtxSetCurrent here: the capturing thread has the context current, and the capture is still open.
        var graph = new CudaGraph(stream.Context);
        graph.Create(stream, static (stream, out handle) =>
            CudaDriverNative.Check(CudaDriverNative.cuStreamEndCapture(stream, out handle), "cuStreamEndCapture"));
        return graph;
    }

    /// <summary>Builds the executable form of the graph; the graph itself may be disposed afterwards.</summary>
    public CudaGraphExec Instantiate() => CudaGraphExec.Instantiate(this);

    private protected override bool Destroy(IntPtr handle) => Released(CudaDriverNative.cuGraphDestroy(handle), "cuGraphDestroy");
}

/// <summary>An instantiated, launchable graph (<c>CUgraphExec</c>), destroyed on <see cref="IDisposable.Dispose"/>.</summary>
public sealed class CudaGraphExec : ContextBoundHandle
{
    private CudaGraphExec(CudaContext context) : base(context)
    {
    }

    /// <inheritdoc />
    protected override string Description => "instantiated CUDA graph";

    internal static CudaGraphExec Instantiate(CudaGraph graph)
    {
        graph.Context.MakeCurrent();
        var exec = new CudaGraphExec(graph.Context);
        exec.Create(graph, static (graph, out handle) =>
            CudaDriverNative.Check(CudaDriverNative.cuGraphInstantiateWithFlags(out handle, graph, 0), "cuGraphInstantiateWithFlags"));
        return exec;
    }

    /// <summary>Queues one replay of the whole graph on <paramref name="stream"/>. The context must be current on this thread.</summary>
    public void Launch(CudaStream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        CudaDriverNative.Check(CudaDriverNative.cuGraphLaunch(this, stream), "cuGraphLaunch");
    }

    private protected override bool Destroy(IntPtr handle) => Released(CudaDriverNative.cuGraphExecDestroy(handle), "cuGraphExecDestroy");
}
