using Keel.Native.Devices;
using Keel.Native.Numerics;

namespace Keel.Native.Kernels.Launchers;

/// <summary>
/// Launches <c>kernels/rope.cu</c>: the rotation of a bf16 [batch, sequence, heads, headDim] tensor by rotary position
/// embedding's angles (forward) or by their negatives (backward), in place or not, reading a (cos, sin) table it builds
/// on the device, in fp64, in the device's <see cref="KernelWorkspace"/> (<see cref="KernelScratch.RopeTable"/>).
/// <para>
/// The table serves one head dimension and theta, for as many positions as its buffer holds: positions start at 0, so a
/// longer table serves every shorter sequence, and a table reserved for the model's sequence is built once, by the first
/// rotation. Another head dimension or theta rebuilds it, which a captured CUDA graph would not see: while the workspace
/// is frozen that is refused.
/// </para>
/// </summary>
internal sealed class RopeKernels
{
    /// <summary>The one specialization of rope.cu.</summary>
    public static KernelSpec Spec { get; } = new("rope.cu");

    private const int Threads = 256;
    private readonly KernelWorkspace _workspace;
    private readonly KernelFunction _table, _rotate;
    private readonly int _maxBlocks;
    // What the table in the workspace holds: built for this head dimension, theta and number of positions, in the
    // workspace buffer of this generation (0: none built).
    private (int HeadDim, float Theta, int Positions, int Generation) _built;

    /// <summary>Loads the kernels on <paramref name="runtime"/>; the table lives in <paramref name="workspace"/>.</summary>
    public RopeKernels(IKernelRuntime runtime, KernelWorkspace workspace)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        _workspace = workspace;
        _table = runtime.Load(Spec, "keel_rope_table");
        _rotate = runtime.Load(Spec, "keel_rope_rotate");
        _maxBlocks = runtime.MultiprocessorCount * 8;
    }

    /// <summary>Float32 elements of the table for <paramref name="positions"/> positions and <paramref name="headDim"/> (a memory planner counts it).</summary>
    public static long TableElements(int positions, int headDim) => (long)positions * headDim;

    /// <summary>Checks that <paramref name="x"/> and <paramref name="output"/> can be rotated: bf16 [B, S, H, D] of one shape, D even, the same or disjoint memory.</summary>
    private static void Check(Tensor x, Tensor output,
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
    private static void CheckTheta(float theta)
    {
        if (!(float.IsFinite(theta) && theta > 1)) throw new ArgumentOutOfRangeException(nameof(theta), theta, "theta must be greater than 1 and finite.");
    }

    /// <summary>
    /// output = x rotated by pos · theta^(−2i/headDim) for pair i at position pos (<paramref name="inverse"/>: by the
    /// negative angles, the backward pass).
    /// </summary>
    /// <exception cref="ArgumentException">x and output are not bf16 [B, S, H, D] of one shape with D even, or overlap without being the same tensor.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="theta"/> is not greater than 1 and finite.</exception>
    /// <exception cref="InvalidOperationException">The table must be rebuilt or grown while the workspace is frozen.</exception>
    public void Rotate(Tensor x, Tensor output, float theta, bool inverse,
                       [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(x))] string? xName = null,
                       [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(output))] string? outputName = null)
    {
        Check(x, output, xName, outputName);
        CheckTheta(theta);
        if (x.IsEmpty) return;
        int seq = (int)x.Shape[1], heads = (int)x.Shape[2], half = (int)x.Shape[3] / 2;
        var table = Table(seq, 2 * half, theta);
        var vector = half % 8 == 0 && x.IsAligned(16) && output.IsAligned(16) ? 1 : 0;
        long rows = x.Shape.Rows;
        var sign = inverse ? -1f : 1f;
        var items = rows * (vector == 1 ? half / 8 : half);
        _rotate.Launch(LaunchShapes.Blocks(Math.Clamp((items + Threads - 1) / Threads, 1, _maxBlocks), Threads), [x, output, table, rows, seq, heads, half, sign, vector],
            new KernelCost(2.0 * (x.Length + output.Length) + 8.0 * seq * half, 3.0 * x.Length));
    }

    /// <summary>The table for <paramref name="headDim"/> and <paramref name="theta"/>, at least <paramref name="sequence"/> positions long, built when it is not.</summary>
    private Tensor Table(int sequence, int headDim, float theta)
    {
        var built = _built;
        var generation = _workspace.Generation(KernelScratch.RopeTable);
        if (built.Generation == generation && built.HeadDim == headDim && built.Theta == theta && built.Positions >= sequence)
            return _workspace.Get(KernelScratch.RopeTable, DType.Float32, TableElements(built.Positions, headDim));
        if (built.Positions > 0 && built.Generation == generation && (built.HeadDim != headDim || built.Theta != theta) && _workspace.IsFrozen)
            throw new InvalidOperationException(
                $"The RoPE table is built for head dimension {built.HeadDim} and theta {built.Theta}, and a CUDA graph captured with it reads it; " +
                $"it cannot be rebuilt for head dimension {headDim} and theta {theta} until the graph is disposed.");
        // As many positions as the buffer holds, so that a table reserved for the model's sequence is built once.
        var held = (int)Math.Min(int.MaxValue, _workspace.Bytes(KernelScratch.RopeTable) / sizeof(float) / headDim);
        var positions = Math.Max(sequence, held);
        var table = _workspace.Get(KernelScratch.RopeTable, DType.Float32, TableElements(positions, headDim));
        var half = headDim / 2;
        _table.Launch(LaunchShapes.Blocks(((long)positions * half + Threads - 1) / Threads, Threads), [table, positions, half, theta],
                      new KernelCost(8.0 * positions * half, 0));
        _built = (headDim, theta, positions, _workspace.Generation(KernelScratch.RopeTable));
        return table;
    }
}
