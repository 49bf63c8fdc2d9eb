namespace Keel.Cuda.Driver;

/// <summary>
/// A kernel in a <see cref="CudaModule"/> (<c>CUfunction</c>). It owns nothing: it is valid while its module is loaded,
/// each call holds the module (a <see cref="HandleLease"/>) so that a concurrent unload waits for it, a call after the
/// unload is refused with <see cref="ObjectDisposedException"/>, and launching allocates nothing.
/// </summary>
public readonly unsafe struct CudaFunction
{
    private readonly CudaModule? _module;
    private readonly IntPtr _function;

    internal CudaFunction(CudaModule module, IntPtr function, string name)
    {
        _module = module;
        _function = function;
        Name = name;
    }

    /// <summary>The name the function was looked up by.</summary>
    public string Name { get; }

    /// <summary>The most threads a block of this kernel may have, given its register and shared memory use.</summary>
    public int MaxThreadsPerBlock => GetAttribute(FunctionAttribute.MaxThreadsPerBlock);

    /// <summary>Registers each thread uses.</summary>
    public int RegisterCount => GetAttribute(FunctionAttribute.NumRegs);

    /// <summary>Local memory (register spills, stack) each thread uses, in bytes.</summary>
    public int LocalMemoryBytes => GetAttribute(FunctionAttribute.LocalSizeBytes);

    /// <summary>Statically declared shared memory per block, in bytes.</summary>
    public int StaticSharedMemoryBytes => GetAttribute(FunctionAttribute.SharedSizeBytes);

    /// <summary>The most dynamic shared memory a launch may ask for, in bytes (48 KiB unless raised).</summary>
    public int MaxDynamicSharedMemoryBytes => GetAttribute(FunctionAttribute.MaxDynamicSharedSizeBytes);

    /// <summary>
    /// Allows launches with up to <paramref name="bytes"/> of dynamic shared memory per block; needed above 48 KiB, up
    /// to the device's <see cref="CudaDeviceInfo.MaxSharedMemoryPerBlockOptInBytes"/> less the static shared memory.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="bytes"/> is negative.</exception>
    public void SetMaxDynamicSharedMemory(int bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        var module = Module;
        module.Context.MakeCurrent();
        using var held = new HandleLease(module);
        CudaDriverNative.Check(CudaDriverNative.cuFuncSetAttribute(_function, FunctionAttribute.MaxDynamicSharedSizeBytes, bytes),
                               "cuFuncSetAttribute");
    }

    /// <summary>
    /// Queues the kernel on <paramref name="stream"/>. <paramref name="arguments"/> points to one pointer per kernel
    /// parameter, each to that parameter's value (a device address as a <see cref="ulong"/>, an <see cref="int"/>, ...);
    /// the driver copies the values before returning. The module's context must be current on the calling thread.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A dimension is below 1 or above its limit, or <paramref name="sharedMemoryBytes"/> is negative.</exception>
    public void Launch(int gridX, int gridY, int gridZ, int blockX, int blockY, int blockZ, int sharedMemoryBytes,
                       CudaStream stream, void** arguments)
    {
        LaunchShape.Validate(gridX, gridY, gridZ, blockX, blockY, blockZ, sharedMemoryBytes);
        ArgumentNullException.ThrowIfNull(stream);
        using var held = new HandleLease(Module);
        CudaDriverNative.Check(CudaDriverNative.cuLaunchKernel(_function, (uint)gridX, (uint)gridY, (uint)gridZ, (uint)blockX,
                                   (uint)blockY, (uint)blockZ, (uint)sharedMemoryBytes, stream, arguments, null), "cuLaunchKernel");
    }

    /// <summary>Queues the kernel on <paramref name="stream"/> with the grid, block and shared memory of <paramref name="shape"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The shape has a dimension out of range (for example a default one).</exception>
    public void Launch(in LaunchShape shape, CudaStream stream, void** arguments) =>
        Launch(shape.Grid.X, shape.Grid.Y, shape.Grid.Z, shape.Block.X, shape.Block.Y, shape.Block.Z, shape.SharedMemoryBytes, stream, arguments);

    /// <inheritdoc />
    public override string ToString() => Name ?? "(no function)";

    private CudaModule Module => _module ?? throw new InvalidOperationException("this CudaFunction was not obtained from a module.");

    private int GetAttribute(int attribute)
    {
        var module = Module;
        module.Context.MakeCurrent();
        using var held = new HandleLease(module);
        CudaDriverNative.Check(CudaDriverNative.cuFuncGetAttribute(out var value, attribute, _function), "cuFuncGetAttribute");
        return value;
    }
}
