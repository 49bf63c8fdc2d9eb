namespace Keel.Cuda.Driver;

/// <summary>
/// The primary context of one device: retained on creation, released on <see cref="IDisposable.Dispose"/>. The
/// primary context is the one the CUDA runtime (and so cuBLAS) uses, which lets driver-API memory and library calls
/// share pointers and streams.
/// </summary>
/// <remarks>
/// Everything created from a context (memory, streams, events, modules, graphs, library handles: each a
/// <see cref="ContextBoundHandle"/>) keeps it alive: disposing the context while they exist only drops this object's
/// claim, and the driver's context is released when the last of them is disposed. Disposing the context ends its use,
/// though: an operation that makes it current afterwards is refused with <see cref="ObjectDisposedException"/>.
/// Creating, freeing, copying and filling make the context current on the calling thread themselves; kernel and graph
/// launches, event and stream calls and library calls expect the caller to have called <see cref="MakeCurrent"/> on
/// that thread (once is enough), so that the hot paths make no extra driver call.
/// </remarks>
public sealed class CudaContext : CudaHandle
{
    private CudaContext(int deviceOrdinal, int device)
    {
        DeviceOrdinal = deviceOrdinal;
        Device = device;
    }

    /// <summary>The ordinal of the device this context belongs to.</summary>
    public int DeviceOrdinal { get; }

    /// <summary>The driver's <c>CUdevice</c> of that device.</summary>
    internal int Device { get; }

    /// <summary>
    /// The raw <c>CUcontext</c>, for a holder of a claim (<see cref="AddDependent"/>) that must bind the context after
    /// this object may have been disposed, and for telling contexts apart.
    /// </summary>
    internal IntPtr ClaimedHandle => handle;

    /// <inheritdoc />
    protected override string Description => $"primary context of CUDA device {DeviceOrdinal}";

    /// <summary>Retains the primary context of device <paramref name="deviceOrdinal"/> and makes it current on this thread.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="deviceOrdinal"/> is negative or past the last device.</exception>
    /// <exception cref="Interop.CudaLibraryNotFoundException">The driver library is missing.</exception>
    public static CudaContext RetainPrimary(int deviceOrdinal)
    {
        var device = CudaDriver.DeviceOf(deviceOrdinal, nameof(deviceOrdinal));
        var result = new CudaContext(deviceOrdinal, device);
        var status = CudaDriverNative.cuDevicePrimaryCtxRetain(out var context, device);
        if (status != CudaDriverNative.CUDA_SUCCESS)
        {
            result.Dispose();
            throw CudaDriverNative.Failure(status, "cuDevicePrimaryCtxRetain");
        }
        result.SetHandle(context);
        try
        {
            result.MakeCurrent();
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    /// <summary>Binds this context to the calling thread (<c>cuCtxSetCurrent</c>).</summary>
    /// <exception cref="ObjectDisposedException">The context was disposed.</exception>
    public void MakeCurrent() => CudaDriverNative.Check(CudaDriverNative.cuCtxSetCurrent(this), "cuCtxSetCurrent");

    /// <summary>Blocks until all work queued in this context has finished; a failed kernel surfaces here.</summary>
    public void Synchronize()
    {
        MakeCurrent();
        CudaDriverNative.Check(CudaDriverNative.cuCtxSynchronize(), "cuCtxSynchronize");
    }

    /// <summary>Free and total device memory as the driver sees it now.</summary>
    public CudaMemoryInfo MemoryInfo
    {
        get
        {
            MakeCurrent();
            CudaDriverNative.Check(CudaDriverNative.cuMemGetInfo(out var free, out var total), "cuMemGetInfo");
            return new CudaMemoryInfo((long)free, (long)total);
        }
    }

    /// <summary>Records that one more handle needs this context to release itself.</summary>
    /// <exception cref="ObjectDisposedException">The context was disposed.</exception>
    internal void AddDependent()
    {
        var added = false;
        DangerousAddRef(ref added);
    }

    /// <summary>Drops a claim taken by <see cref="AddDependent"/>; the last one releases the primary context.</summary>
    internal void RemoveDependent() => DangerousRelease();

    /// <inheritdoc />
    protected override bool ReleaseHandle() =>
        Released(CudaDriverNative.cuDevicePrimaryCtxRelease(Device), "cuDevicePrimaryCtxRelease");
}

/// <summary>Device memory as <see cref="CudaContext.MemoryInfo"/> reports it.</summary>
/// <param name="FreeBytes">Bytes not yet allocated by anyone on the device.</param>
/// <param name="TotalBytes">Bytes of device memory in all.</param>
public readonly record struct CudaMemoryInfo(long FreeBytes, long TotalBytes);
