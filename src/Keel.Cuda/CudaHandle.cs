using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Keel.Cuda;

/// <summary>
/// Base of every handle Keel.Cuda owns (memory, streams, events, modules, graphs, library handles, compiler programs).
/// Every binding takes the handle as this type, so the interop marshaller holds a reference across each call
/// (<see cref="SafeHandle.DangerousAddRef"/> before, <see cref="SafeHandle.DangerousRelease"/> after): a
/// <see cref="IDisposable.Dispose"/> on another thread waits for the call to return before the object is released, and a
/// call with a disposed handle is refused with <see cref="ObjectDisposedException"/> before it reaches the library.
/// </summary>
/// <remarks>
/// <see cref="IDisposable.Dispose"/> releases the native object through its library. The finalizer never calls into
/// CUDA: a finalizer runs on another thread, possibly after the context is gone, so a handle that reaches it is reported
/// as a leak through <see cref="LeakDetected"/> and <see cref="Trace"/> and left alone. A release the library refuses is
/// reported through <see cref="Trace"/> with the call and its status.
/// </remarks>
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

    /// <summary>
    /// True when <paramref name="status"/>, the result of the release call <paramref name="call"/>, is success (0 in
    /// every CUDA library); otherwise traces the failure, since a release cannot throw.
    /// </summary>
    private protected bool Released(int status, string call)
    {
        if (status == 0) return true;
        Trace.TraceError($"Keel.Cuda: {call} failed with status {status} releasing {Description}.");
        return false;
    }

    /// <summary>
    /// For a handle the marshaller created (an <c>out</c> parameter): when <paramref name="status"/>, its creating call's
    /// result, is a failure, marks it as owning nothing, whatever the library left in the output, so that nothing is
    /// released or reported for it. Returns <paramref name="status"/> for the caller to check.
    /// </summary>
    internal int DiscardUnlessCreated(int status)
    {
        if (status != 0) SetHandleAsInvalid();
        return status;
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (!disposing && !IsInvalid && !IsClosed)
        {
            var message = $"Keel.Cuda: {Description} was not disposed; it is left unreleased (a finalizer never calls into CUDA).";
            Trace.TraceWarning(message);
            LeakDetected?.Invoke(message);
            SetHandleAsInvalid();
        }
        base.Dispose(disposing);
    }
}

/// <summary>
/// A reference on a handle held across a native call that takes a value derived from the handle rather than the handle
/// itself (an address inside an allocation, a kernel of a module), as <see cref="SafeBuffer.AcquirePointer"/> does:
/// while it is held, a <see cref="IDisposable.Dispose"/> on another thread cannot release the object. Taking it on a
/// disposed handle throws <see cref="ObjectDisposedException"/>. A stack-only struct: holding one allocates nothing.
/// </summary>
internal readonly ref struct HandleLease
{
    private readonly SafeHandle? _handle;

    /// <summary>Takes a reference on <paramref name="handle"/>, or none when it is null.</summary>
    /// <exception cref="ObjectDisposedException"><paramref name="handle"/> was disposed.</exception>
    internal HandleLease(SafeHandle? handle)
    {
        if (handle is null) return;
        var added = false;
        handle.DangerousAddRef(ref added);
        _handle = handle;
    }

    /// <summary>The raw value of the handle, valid while the lease is held; zero for a lease on nothing.</summary>
    internal IntPtr Value => _handle?.DangerousGetHandle() ?? IntPtr.Zero;

    /// <summary>Drops the reference.</summary>
    public void Dispose() => _handle?.DangerousRelease();
}
