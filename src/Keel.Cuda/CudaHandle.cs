using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Keel.Cuda;

/// <summary>
/// Base of every handle Keel.Cuda owns (memory, streams, events, modules, graphs, library handles).
/// <see cref="IDisposable.Dispose"/> releases the native object through its library. The finalizer never calls
/// into CUDA: a finalizer runs on another thread, possibly after the context is gone, so a handle that reaches
/// it is reported as a leak through <see cref="LeakDetected"/> and <see cref="Trace"/> and left alone.
/// </summary>
public abstract class CudaHandle : SafeHandle
{
    /// <summary>Creates an empty (invalid) handle that owns what it will be given.</summary>
    protected CudaHandle() : base(IntPtr.Zero, ownsHandle: true)
    {
    }

    /// <summary>Raised on the finalizer thread with a description of each handle that was never disposed.</summary>
    public static event Action<string>? LeakDetected;

    /// <inheritdoc />
    public override bool IsInvalid => handle == IntPtr.Zero;

    /// <summary>What this handle is, for leak reports (for example "device memory, 4096 bytes").</summary>
    protected abstract string Description { get; }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (!disposing && !IsInvalid && !IsClosed)
        {
            var message = $"Keel.Cuda: {Description} was not disposed; it was left to the CUDA context to reclaim.";
            Trace.TraceWarning(message);
            LeakDetected?.Invoke(message);
            SetHandleAsInvalid();
        }
        base.Dispose(disposing);
    }
}
