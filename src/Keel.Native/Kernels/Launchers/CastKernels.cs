using Keel.Native.Devices;
using Keel.Native.Numerics;

namespace Keel.Native.Kernels.Launchers;

/// <summary>Launches <c>kernels/cast.cu</c>: fp32 ↔ bf16 conversion.</summary>
public sealed unsafe class CastKernels
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

    /// <summary>destination = bf16_rn(source).</summary>
    public void ToBFloat16(DeviceSpan<float> source, DeviceSpan<BFloat16> destination)
    {
        Validate(source, destination);
        Launch(_toBFloat16, source.Address, destination.Address, source.Length);
    }

    /// <summary>destination = float(source), exactly.</summary>
    public void ToFloat(DeviceSpan<BFloat16> source, DeviceSpan<float> destination)
    {
        Validate(source, destination);
        Launch(_toFloat, source.Address, destination.Address, source.Length);
    }

    private static void Validate<TIn, TOut>(DeviceSpan<TIn> source, DeviceSpan<TOut> destination)
        where TIn : unmanaged where TOut : unmanaged
    {
        Require.Length(destination, source.Length);
        Require.Aligned(source, 16);
        Require.Aligned(destination, 16);
    }

    private void Launch(KernelFunction kernel, ulong source, ulong destination, long n)
    {
        if (n == 0) return;
        var blocks = Math.Clamp((n / ElementsPerThread + Threads - 1) / Threads, 1, _maxBlocks);
        void** args = stackalloc void*[] { &source, &destination, &n };
        kernel.Launch(LaunchShape.Linear(blocks, Threads), args);
    }
}
