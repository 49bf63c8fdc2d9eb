using Keel.Native.Devices;
using Keel.Native.Numerics;

namespace Keel.Native.Kernels.Launchers;

/// <summary>
/// Launches <c>kernels/rope.cu</c>: the (cos, sin) table of rotary position embedding, and the rotation of a bf16
/// [batch, sequence, heads, headDim] tensor by it (forward) or by its inverse (backward), in place or not.
/// </summary>
internal sealed unsafe class RopeKernels
{
    /// <summary>The one specialization of rope.cu.</summary>
    public static KernelSpec Spec { get; } = new("rope.cu");

    private const int Threads = 256;
    private readonly KernelFunction _table, _rotate;
    private readonly int _maxBlocks;

    /// <summary>Loads the kernels on <paramref name="runtime"/>.</summary>
    public RopeKernels(IKernelRuntime runtime)
    {
        _table = runtime.Load(Spec, "keel_rope_table");
        _rotate = runtime.Load(Spec, "keel_rope_rotate");
        _maxBlocks = runtime.MultiprocessorCount * 8;
    }

    /// <summary>Float32 elements of the table for <paramref name="positions"/> positions and <paramref name="headDim"/>.</summary>
    public static long TableElements(int positions, int headDim) => (long)positions * headDim;

    /// <summary>Checks that <paramref name="x"/> and <paramref name="output"/> can be rotated: bf16 [B, S, H, D] of one shape, D even, the same or disjoint memory.</summary>
    /// <exception cref="ArgumentException">They cannot.</exception>
    public static void Check(Tensor x, Tensor output,
                             [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(x))] string? xName = null,
                             [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(output))] string? outputName = null)
    {
        Require.DType(x, DType.BFloat16, xName);
        Require.DType(output, DType.BFloat16, outputName);
        if (x.Shape.Rank != 4)
            throw new ArgumentException($"{xName} has shape {x.Shape}; [batch, sequence, heads, headDim] expected.", xName);
        Require.Shape(output, x.Shape, outputName);
        if (x.Shape[3] % 2 != 0) throw new ArgumentException($"headDim must be even, not {x.Shape[3]}.", xName);
        Overlap.RequireSameOrDisjoint(output, x, outputName, xName);
    }

    /// <summary>Checks that <paramref name="theta"/> is a valid frequency base: greater than 1 and finite.</summary>
    /// <exception cref="ArgumentOutOfRangeException">It is not.</exception>
    public static void CheckTheta(float theta)
    {
        if (!(float.IsFinite(theta) && theta > 1)) throw new ArgumentOutOfRangeException(nameof(theta), theta, "theta must be greater than 1 and finite.");
    }

    /// <summary>table[pos][i] = (cos, sin) of pos · theta^(−2i/headDim), computed in fp64, for pos &lt; <paramref name="positions"/>.</summary>
    /// <exception cref="ArgumentException">The table is not Float32 of <see cref="TableElements"/> elements at least, or a size or theta is invalid.</exception>
    public void BuildTable(Tensor table, int positions, int headDim, float theta)
    {
        CheckTheta(theta);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(positions);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(headDim);
        Require.DType(table, DType.Float32);
        Require.AtLeast(table, TableElements(positions, headDim));
        Require.Aligned(table, 16);
        ulong t = table.Address;
        var half = headDim / 2;
        void** args = stackalloc void*[] { &t, &positions, &half, &theta };
        _table.Launch(LaunchShapes.Blocks(((long)positions * half + Threads - 1) / Threads, Threads), args, new KernelCost(8.0 * positions * half, 0));
    }

    /// <summary>
    /// output = x rotated by the table's angles (<paramref name="inverse"/>: by their negatives, the backward pass).
    /// The table must be built for x's head dimension and at least its sequence length.
    /// </summary>
    /// <exception cref="ArgumentException">The tensors fail <see cref="Check"/>, or the table is too small.</exception>
    public void Rotate(Tensor x, Tensor output, Tensor table, bool inverse)
    {
        Check(x, output);
        int seq = (int)x.Shape[1], heads = (int)x.Shape[2], half = (int)x.Shape[3] / 2;
        Require.DType(table, DType.Float32);
        Require.AtLeast(table, TableElements(seq, 2 * half));
        Require.Aligned(table, 16);
        if (x.IsEmpty) return;
        var vector = half % 8 == 0 && x.IsAligned(16) && output.IsAligned(16) ? 1 : 0;
        long rows = x.Shape.Rows;
        ulong xa = x.Address, oa = output.Address, t = table.Address;
        var sign = inverse ? -1f : 1f;
        void** args = stackalloc void*[] { &xa, &oa, &t, &rows, &seq, &heads, &half, &sign, &vector };
        var items = rows * (vector == 1 ? half / 8 : half);
        _rotate.Launch(LaunchShapes.Blocks(Math.Clamp((items + Threads - 1) / Threads, 1, _maxBlocks), Threads), args,
            new KernelCost(2.0 * (x.Length + output.Length) + 8.0 * seq * half, 3.0 * x.Length));
    }
}
