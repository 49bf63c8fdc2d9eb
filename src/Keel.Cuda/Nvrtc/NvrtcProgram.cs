namespace Keel.Cuda.Nvrtc;

/// <summary>
/// An NVRTC program (<c>nvrtcProgram</c>): one translation unit with its options, log and output, destroyed on
/// <see cref="IDisposable.Dispose"/>. Created by the marshaller (<c>nvrtcCreateProgram</c>'s <c>out</c>), hence the public
/// constructor of an empty handle on an internal type.
/// </summary>
internal sealed class NvrtcProgram : CudaHandle
{
    /// <summary>An empty handle, for the marshaller to fill.</summary>
    public NvrtcProgram()
    {
    }

    /// <inheritdoc />
    protected override string Description => "NVRTC program";

    /// <inheritdoc />
    protected override bool ReleaseHandle()
    {
        var program = handle;
        return Released(NvrtcNative.nvrtcDestroyProgram(ref program), "nvrtcDestroyProgram");
    }
}
