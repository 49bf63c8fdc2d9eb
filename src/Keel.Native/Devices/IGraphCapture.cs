namespace Keel.Native.Devices;

/// <summary>
/// Records the work a device queues into a graph that replays it with one launch (CUDA graphs): what
/// <see cref="IDevice.GraphCapture"/> offers on devices that can.
/// </summary>
/// <example>
/// <code>
/// if (device.GraphCapture is { } graphs)
/// {
///     using var step = graphs.Capture(() => { model.Forward(withLoss: true); model.Backward(); });
///     step.Replay();   // after uploading the next batch into the same buffers
/// }
/// </code>
/// </example>
public interface IGraphCapture
{
    /// <summary>
    /// Records the work <paramref name="work"/> queues into a graph; nothing runs while it records. The work must queue only
    /// device work: no allocation (it fails, naming the call), no copy to the host and no synchronization. Every argument,
    /// tensor addresses included, is frozen into the graph: replay it only while they stay valid, with whatever changes
    /// between replays uploaded into the same buffers first. The caller owns the result.
    /// </summary>
    IDeviceGraph Capture(Action work);
}

/// <summary>Work recorded by <see cref="IGraphCapture.Capture"/>.</summary>
public interface IDeviceGraph : IDisposable
{
    /// <summary>Queues one replay of the recorded work on the device's stream.</summary>
    void Replay();
}
