using Keel.Cuda.Interop;

namespace Keel.Cuda.Driver;

/// <summary>
/// A loaded module of device code (<c>cuModuleLoadData</c>): a CUBIN for this device's exact architecture, or PTX or
/// a fatbin the driver finishes compiling. Unloaded on <see cref="IDisposable.Dispose"/>; the
/// <see cref="CudaFunction"/>s taken from it are valid until then, and a call through one after it is refused.
/// </summary>
public sealed unsafe class CudaModule : ContextBoundHandle
{
    private CudaModule(CudaContext context, int imageBytes) : base(context) => ImageBytes = imageBytes;

    /// <summary>The size of the image the module was loaded from.</summary>
    public int ImageBytes { get; }

    /// <inheritdoc />
    protected override string Description => $"CUDA module ({ImageBytes}-byte image)";

    /// <summary>
    /// Loads <paramref name="image"/> (a CUBIN, a fatbin, or NUL-terminated PTX) into <paramref name="context"/>.
    /// The driver reads the image during the call only.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="image"/> is empty.</exception>
    /// <exception cref="CudaException">The driver rejected the image, for example CUDA_ERROR_NO_BINARY_FOR_GPU for another architecture.</exception>
    public static CudaModule Load(CudaContext context, ReadOnlySpan<byte> image)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (image.IsEmpty) throw new ArgumentException("the module image is empty.", nameof(image));
        context.MakeCurrent();
        var module = new CudaModule(context, image.Length);
        module.Create(image, static (image, out handle) =>
        {
            fixed (byte* p = image) CudaDriverNative.Check(CudaDriverNative.cuModuleLoadData(out handle, p), "cuModuleLoadData");
        });
        return module;
    }

    /// <summary>The kernel named <paramref name="name"/> (its <c>extern "C"</c> name, or the mangled one).</summary>
    /// <exception cref="CudaException">No kernel has that name (CUDA_ERROR_NOT_FOUND).</exception>
    public CudaFunction GetFunction(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        Context.MakeCurrent();
        using var strings = new Utf8Strings();
        CudaDriverNative.Check(CudaDriverNative.cuModuleGetFunction(out var function, this, strings.Add(name)), "cuModuleGetFunction");
        return new CudaFunction(this, function, name);
    }

    private protected override bool Destroy(IntPtr handle) => Released(CudaDriverNative.cuModuleUnload(handle), "cuModuleUnload");
}
