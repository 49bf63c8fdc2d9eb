using Keel.Cuda.Driver;
using Keel.Native.Devices;
using Keel.Native.Numerics;

namespace Keel.Native.Kernels.Launchers;

/// <summary>
/// Launches <c>kernels/activations.cu</c>: SwiGLU and GELU (tanh approximation), forward and backward, on
/// BFloat16 tensors (the GEMM operands of a GPU training step) or Float32 tensors, with fp32 math. Each
/// element type is its own specialization, compiled the first time a tensor of that type comes by.
/// </summary>
internal sealed class ActivationKernels
{
    /// <summary>The specialization for BFloat16 tensors.</summary>
    public static KernelSpec BFloat16Spec { get; } = SpecFor(DType.BFloat16);

    /// <summary>The specialization for Float32 tensors.</summary>
    public static KernelSpec Float32Spec { get; } = SpecFor(DType.Float32);

    /// <summary>SwiGLU's F (the width of h) must be a multiple of this, so 16-byte vectors never straddle the gate and up halves.</summary>
    public const int FfnMultiple = 8;

    private const int Threads = 256;
    private readonly Lazy<Functions> _bf16, _f32;
    private readonly int _maxBlocks;

    /// <summary>Prepares to load the kernels on <paramref name="runtime"/> (each specialization on first use).</summary>
    public ActivationKernels(IKernelRuntime runtime)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        _bf16 = new(() => new Functions(runtime, BFloat16Spec));
        _f32 = new(() => new Functions(runtime, Float32Spec));
        _maxBlocks = runtime.MultiprocessorCount * 8;
    }

    /// <summary>h = silu(gate) ⊙ up over gateUp [rows, 2F] (gate in columns 0..F−1, up in F..2F−1), h [rows, F].</summary>
    /// <exception cref="ArgumentException">
    /// gateUp is not a matrix of BFloat16 or Float32 with 2F columns, F a multiple of 8; h differs in type or
    /// element count or overlaps gateUp; a tensor is not 16-byte aligned.
    /// </exception>
    public void SwiGluForward(Tensor gateUp, Tensor h)
    {
        var (rows, ffn) = SwiGluShape(gateUp);
        CheckLike(h, gateUp.DType, rows * ffn);
        Overlap.RequireDisjoint(h, gateUp);
        if (rows == 0) return;
        var blocks = Blocks(rows * ffn, gateUp.DType);
        // Reads gate and up, writes h: 3 elements per element of h.
        For(gateUp.DType).SwiGluForward.Launch(LaunchShapes.Blocks(blocks, Threads), [gateUp, h, rows, ffn],
            new KernelCost(3.0 * rows * ffn * gateUp.DType.SizeOf(), 0));
    }

    /// <summary>Backward of <see cref="SwiGluForward"/>: dGateUp [rows, 2F] (overwritten) from gateUp and dh [rows, F].</summary>
    /// <exception cref="ArgumentException">As for <see cref="SwiGluForward"/>; dGateUp overlaps gateUp or dh.</exception>
    public void SwiGluBackward(Tensor gateUp, Tensor dh, Tensor dGateUp)
    {
        var (rows, ffn) = SwiGluShape(gateUp);
        CheckLike(dh, gateUp.DType, rows * ffn);
        CheckLike(dGateUp, gateUp.DType, gateUp.Length);
        Overlap.RequireDisjoint(dGateUp, gateUp);
        Overlap.RequireDisjoint(dGateUp, dh);
        if (rows == 0) return;
        var blocks = Blocks(rows * ffn, gateUp.DType);
        // Reads gate, up and dh, writes dgate and dup.
        For(gateUp.DType).SwiGluBackward.Launch(LaunchShapes.Blocks(blocks, Threads), [gateUp, dh, dGateUp, rows, ffn],
            new KernelCost(5.0 * rows * ffn * gateUp.DType.SizeOf(), 0));
    }

    /// <summary>y = GELU(x), tanh approximation, elementwise over any length; y may be x itself.</summary>
    /// <exception cref="ArgumentException">x is not BFloat16 or Float32; y differs in type or length or partly overlaps x; a tensor is not 16-byte aligned.</exception>
    public void GeluForward(Tensor x, Tensor y)
    {
        CheckElementType(x);
        Require.Aligned(x, 16);
        CheckLike(y, x.DType, x.Length);
        Overlap.RequireSameOrDisjoint(y, x);
        long n = x.Length;
        if (n == 0) return;
        var blocks = Blocks(n, x.DType);
        For(x.DType).GeluForward.Launch(LaunchShapes.Blocks(blocks, Threads), [x, y, n], new KernelCost(2.0 * n * x.DType.SizeOf(), 0));
    }

    /// <summary>dx = dy · GELU′(x) (overwritten); dx may be dy itself but must not overlap x.</summary>
    /// <exception cref="ArgumentException">As for <see cref="GeluForward"/>, for dy and dx.</exception>
    public void GeluBackward(Tensor x, Tensor dy, Tensor dx)
    {
        CheckElementType(x);
        Require.Aligned(x, 16);
        CheckLike(dy, x.DType, x.Length);
        CheckLike(dx, x.DType, x.Length);
        Overlap.RequireSameOrDisjoint(dx, dy);
        Overlap.RequireDisjoint(dx, x);
        long n = x.Length;
        if (n == 0) return;
        var blocks = Blocks(n, x.DType);
        For(x.DType).GeluBackward.Launch(LaunchShapes.Blocks(blocks, Threads), [x, dy, dx, n], new KernelCost(3.0 * n * x.DType.SizeOf(), 0));
    }

    private static KernelSpec SpecFor(DType dtype) => new("activations.cu", new KeyValuePair<string, string>("ELEMENT", dtype.KernelTypeName()));

    private Functions For(DType dtype) => dtype == DType.BFloat16 ? _bf16.Value : _f32.Value;

    // One thread per 16-byte vector, capped at a few resident blocks per SM (the kernels stride over the rest).
    private long Blocks(long elements, DType dtype)
    {
        var vectors = elements / (16 / dtype.SizeOf());
        return Math.Clamp((vectors + Threads - 1) / Threads, 1, _maxBlocks);
    }

    private static (long Rows, int Ffn) SwiGluShape(Tensor gateUp)
    {
        CheckElementType(gateUp);
        if (gateUp.Shape.Rank < 2)
            throw new ArgumentException($"gateUp has shape {gateUp.Shape}; a matrix [rows, 2F] is expected.", nameof(gateUp));
        var columns = gateUp.Shape.Last;
        if (columns % (2 * FfnMultiple) != 0 || columns / 2 > int.MaxValue)
            throw new ArgumentException($"gateUp has {columns} columns; 2F with F a multiple of {FfnMultiple} is expected.", nameof(gateUp));
        Require.Aligned(gateUp, 16);
        return (gateUp.Shape.Rows, (int)(columns / 2));
    }

    private static void CheckElementType(Tensor tensor, [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(tensor))] string? name = null)
    {
        if (tensor.DType is not (DType.BFloat16 or DType.Float32))
            throw new ArgumentException($"{name} is {tensor.DType}; the activation kernels take BFloat16 or Float32.", name);
    }

    private static void CheckLike(Tensor tensor, DType dtype, long length, [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(tensor))] string? name = null)
    {
        Require.DType(tensor, dtype, name);
        Require.Length(tensor, length, name);
        Require.Aligned(tensor, 16, name);
    }

    private sealed class Functions(IKernelRuntime runtime, KernelSpec spec)
    {
        public KernelFunction SwiGluForward { get; } = runtime.Load(spec, "keel_activations_swiglu_forward");
        public KernelFunction SwiGluBackward { get; } = runtime.Load(spec, "keel_activations_swiglu_backward");
        public KernelFunction GeluForward { get; } = runtime.Load(spec, "keel_activations_gelu_forward");
        public KernelFunction GeluBackward { get; } = runtime.Load(spec, "keel_activations_gelu_backward");
    }
}
