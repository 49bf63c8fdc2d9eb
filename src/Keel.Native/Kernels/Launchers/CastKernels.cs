using Keel.Cuda.Driver;
using Keel.Native.Devices;
using Keel.Native.Numerics;

namespace Keel.Native.Kernels.Launchers;

/// <summary>Launches <c>kernels/cast.cu</c>: fp32 ↔ bf16 conversion.</summary>
internal sealed class CastKernels
{
    /// <summary>The one specialization of cast.cu.</summary>
    public static KernelSpec Spec { get; } = new("cast.cu");

    private const int Threads = 256, ElementsPerThread = 8;
    private readonly KernelFunction _toBFloat16, _toFloat;
    private readonly int _maxBlocks;

    /// <summary>Loads the kernels on <paramref name="runtime"/>.</summary>
    public CastKernels(IKernelRuntime runtime)
    {
        _toBFloat16 = runtime.Load(Spec, "keel_cast_f32_to_bf16");
        _toFloat = runtime.Load(Spec, "keel_cast_bf16_to_f32");
        // Enough resident blocks to cover every SM several times; the grid-stride loop does the rest.
        _maxBlocks = runtime.MultiprocessorCount * 8;
    }

    /// <summary>destination = convert(source) between Float32 and BFloat16, either way (to bf16: round to nearest even).</summary>
    /// <exception cref="ArgumentException">The types are not one Float32 and one BFloat16, the lengths differ, or a tensor is not 16-byte aligned.</exception>
    public void Convert(Tensor source, Tensor destination)
    {
        var kernel = (source.DType, destination.DType) switch
        {
            (DType.Float32, DType.BFloat16) => _toBFloat16,
            (DType.BFloat16, DType.Float32) => _toFloat,
            _ => throw new ArgumentException($"Cannot convert {source.DType} to {destination.DType}; the kernel converts between Float32 and BFloat16.", nameof(destination)),
        };
        Require.Length(destination, source.Length);
        Require.Aligned(source, 16);
        Require.Aligned(destination, 16);
        long n = source.Length;
        if (n == 0) return;
        var blocks = Math.Clamp((n / ElementsPerThread + Threads - 1) / Threads, 1, _maxBlocks);
        kernel.Launch(LaunchShapes.Blocks(blocks, Threads), [source, destination, n], new KernelCost(n * (source.DType.SizeOf() + destination.DType.SizeOf()), 0));
    }
}
