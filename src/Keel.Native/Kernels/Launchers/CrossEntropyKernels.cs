using Keel.Native.Devices;
using Keel.Native.Numerics;

namespace Keel.Native.Kernels.Launchers;

/// <summary>
/// Launches <c>kernels/cross_entropy.cu</c>: fused softmax cross-entropy over Float32 logits [T, vocab] with
/// Int32 targets, each row's loss and, optionally, its gradient (in place over the logits if wished).
/// </summary>
internal sealed class CrossEntropyKernels
{
    /// <summary>The one specialization of cross_entropy.cu.</summary>
    public static KernelSpec Spec { get; } = new("cross_entropy.cu");

    private readonly Lazy<KernelFunction> _kernel;

    /// <summary>Prepares to launch on <paramref name="runtime"/> (the kernel is loaded on first use).</summary>
    public CrossEntropyKernels(IKernelRuntime runtime)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        _kernel = new(() => runtime.Load(Spec, "keel_cross_entropy_fused"));
    }

    /// <summary>
    /// losses[t] = logsumexp(logits[t, :]) − logits[t, targets[t]] and, when <paramref name="dLogits"/> is not
    /// empty, dLogits[t, :] = (softmax(logits[t, :]) − onehot(targets[t])) · <paramref name="lossScale"/>. A target
    /// of −1 gives loss 0 and a zero gradient row; any other target outside [0, vocab) gives NaN for that row
    /// (targets stay on the device, so they are not checked on the host). dLogits may be logits itself.
    /// </summary>
    /// <exception cref="ArgumentException">
    /// logits is not a Float32 matrix; targets is not Int32 or losses not Float32 with one element per row;
    /// dLogits is neither empty nor a Float32 tensor of logits' shape, or partly overlaps logits; losses overlaps
    /// the logits or their gradient; logits or dLogits is not 16-byte aligned.
    /// </exception>
    public void Forward(Tensor logits, Tensor targets, Tensor losses, Tensor dLogits, float lossScale)
    {
        Require.DType(logits, DType.Float32);
        if (logits.Shape.Rank < 2 || logits.Shape.Last == 0 || logits.Shape.Last > int.MaxValue || logits.Shape.Rows > int.MaxValue)
            throw new ArgumentException($"logits has shape {logits.Shape}; a matrix [tokens, vocab] with both below 2^31 and vocab positive is expected.", nameof(logits));
        Require.Aligned(logits, 16);
        var rows = logits.Shape.Rows;
        int vocab = (int)logits.Shape.Last;
        Require.DType(targets, DType.Int32);
        Require.Length(targets, rows);
        Require.DType(losses, DType.Float32);
        Require.Length(losses, rows);
        Overlap.RequireDisjoint(losses, logits);
        if (!dLogits.IsEmpty)
        {
            Require.DType(dLogits, DType.Float32);
            Require.Shape(dLogits, logits.Shape);
            Require.Aligned(dLogits, 16);
            Overlap.RequireSameOrDisjoint(dLogits, logits);
            Overlap.RequireDisjoint(losses, dLogits);
        }
        if (rows == 0) return;

        // About 16 elements per thread: a warp for a 256-token vocabulary, 1024 threads from 16k up.
        var threads = (int)Math.Clamp((vocab / 16 + 31) / 32 * 32, 32, 1024);
        // The logits are read once for the row's max and sum; with a gradient, read again and written.
        var bytes = 4.0 * rows * vocab * (dLogits.IsEmpty ? 1 : 3) + 12.0 * rows;
        _kernel.Value.Launch(LaunchShapes.Blocks(rows, threads), [logits, targets, losses, dLogits, vocab, lossScale], new KernelCost(bytes, 0));
    }
}
