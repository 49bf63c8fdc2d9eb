using System.Numerics;

namespace Keel.Native.Reference;

/// <summary>
/// Fused softmax + cross entropy over logits [tokens, stride] whose first <c>vocab</c> columns are the vocabulary. For
/// token t with target y_t:
/// <code>
/// loss_t             = logsumexp(logits[t, 0..vocab)) − logits[t, y_t]
/// dlogits[t, j]      = (softmax(logits[t, 0..vocab))_j − [j = y_t]) · dloss_t     for j &lt; vocab
/// dlogits[t, j]      = 0                                                         for vocab ≤ j &lt; stride
/// </code>
/// The columns from vocab to stride are the LM head's padding (its rows rounded up to a multiple of 64 so that the GEMM's
/// leading dimension stays aligned, <see cref="Model.ModelConfig.PaddedVocabularySize"/>): they are not part of the
/// softmax, and their gradient is written as zero, so the padded rows of the head get none. stride = vocab is a plain
/// [tokens, vocab] matrix. A target of <see cref="IgnoreTarget"/> (−1) means the token does not count: loss 0, gradient 0.
/// Math in fp64 (the row maximum is subtracted before exponentiating). dLogits is overwritten.
/// </summary>
public static class CrossEntropy
{
    /// <summary>The target value of a token that does not count.</summary>
    public const int IgnoreTarget = -1;

    /// <summary>Writes every token's loss: logsumexp(row[0..vocab)) − row[target], or 0 for an ignored token.</summary>
    /// <param name="tokens">Number of rows; may be 0.</param>
    /// <param name="vocab">The vocabulary: the columns that count; positive.</param>
    /// <param name="stride">Row length of logits (and dLogits), at least <paramref name="vocab"/>; columns from vocab on are padding.</param>
    /// <param name="logits">Logits [tokens, stride].</param>
    /// <param name="targets">Target per token [tokens], in [0, vocab) or −1.</param>
    /// <param name="losses">Output [tokens].</param>
    /// <exception cref="ArgumentException">A size or a span's length is invalid, or a target is out of range.</exception>
    public static void Forward<T>(int tokens, int vocab, int stride, ReadOnlySpan<T> logits, ReadOnlySpan<int> targets, Span<T> losses)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Validate(tokens, vocab, stride, logits, targets);
        Guard.Shape(losses, nameof(losses), tokens);
        for (var t = 0; t < tokens; t++)
            losses[t] = targets[t] == IgnoreTarget ? T.Zero : T.CreateTruncating(Loss(logits.Slice(t * stride, vocab), targets[t]));
    }

    /// <summary>The mean loss over the tokens that count (summed in fp64); NaN when every token is ignored (a mean of nothing).</summary>
    /// <inheritdoc cref="Forward{T}(int, int, int, ReadOnlySpan{T}, ReadOnlySpan{int}, Span{T})"/>
    public static double Forward<T>(int tokens, int vocab, int stride, ReadOnlySpan<T> logits, ReadOnlySpan<int> targets)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Validate(tokens, vocab, stride, logits, targets);
        double total = 0;
        var counted = 0;
        for (var t = 0; t < tokens; t++)
        {
            if (targets[t] == IgnoreTarget) continue;
            total += Loss(logits.Slice(t * stride, vocab), targets[t]);
            counted++;
        }
        return counted == 0 ? double.NaN : total / counted;
    }

    /// <summary>
    /// dLogits[t, 0..vocab) = (softmax(logits[t, 0..vocab)) − onehot(target_t)) · dLoss[t] and dLogits[t, vocab..stride) = 0;
    /// zero rows for ignored tokens.
    /// </summary>
    /// <param name="tokens">Number of rows; may be 0.</param>
    /// <param name="vocab">The vocabulary: the columns that count; positive.</param>
    /// <param name="stride">Row length of logits and dLogits, at least <paramref name="vocab"/>; columns from vocab on are padding.</param>
    /// <param name="logits">Forward's logits [tokens, stride].</param>
    /// <param name="targets">Target per token [tokens], in [0, vocab) or −1.</param>
    /// <param name="dLoss">Gradient of each token's loss [tokens] (1/count for a mean over the counted tokens).</param>
    /// <param name="dLogits">Output, overwritten: [tokens, stride]; may be logits itself (in place), must not overlap dLoss.</param>
    /// <exception cref="ArgumentException">A size or a span's length is invalid, a target is out of range, or dLogits overlaps.</exception>
    public static void Backward<T>(int tokens, int vocab, int stride, ReadOnlySpan<T> logits, ReadOnlySpan<int> targets,
                                   ReadOnlySpan<T> dLoss, Span<T> dLogits)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Validate(tokens, vocab, stride, logits, targets);
        Guard.Shape(dLoss, nameof(dLoss), tokens);
        Guard.Shape(dLogits, nameof(dLogits), tokens, stride);
        Guard.SameOrDisjoint(dLogits, nameof(dLogits), logits, nameof(logits));
        Guard.Disjoint(dLogits, nameof(dLogits), dLoss, nameof(dLoss));
        for (var t = 0; t < tokens; t++)
        {
            var grad = dLogits.Slice(t * stride, stride);
            if (targets[t] == IgnoreTarget)
            {
                grad.Clear();
                continue;
            }
            var row = logits.Slice(t * stride, vocab);
            var lse = LogSumExp(row);
            var scale = double.CreateTruncating(dLoss[t]);
            for (var j = 0; j < vocab; j++)
            {
                // Read before writing: dLogits may be logits itself.
                var softmax = Math.Exp(double.CreateTruncating(row[j]) - lse);
                grad[j] = T.CreateTruncating((softmax - (j == targets[t] ? 1 : 0)) * scale);
            }
            grad[vocab..].Clear();
        }
    }

    private static double Loss<T>(ReadOnlySpan<T> row, int target)
        where T : unmanaged, IFloatingPointIeee754<T> =>
        LogSumExp(row) - double.CreateTruncating(row[target]);

    private static double LogSumExp<T>(ReadOnlySpan<T> row)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var max = double.NegativeInfinity;
        foreach (var v in row) max = Math.Max(max, double.CreateTruncating(v));
        var sum = 0.0;
        foreach (var v in row) sum += Math.Exp(double.CreateTruncating(v) - max);
        return max + Math.Log(sum);
    }

    private static void Validate<T>(int tokens, int vocab, int stride, ReadOnlySpan<T> logits, ReadOnlySpan<int> targets)
    {
        Guard.NonNegative(tokens, nameof(tokens));
        Guard.Positive(vocab, nameof(vocab));
        if (stride < vocab) throw new ArgumentOutOfRangeException(nameof(stride), stride, $"stride ({stride}) must be at least vocab ({vocab}): a row holds the vocabulary, then its padding.");
        Guard.Shape(logits, nameof(logits), tokens, stride);
        Guard.Shape(targets, nameof(targets), tokens);
        for (var t = 0; t < tokens; t++)
        {
            if (targets[t] != IgnoreTarget && (uint)targets[t] >= (uint)vocab)
                throw new ArgumentOutOfRangeException(nameof(targets), targets[t], $"targets[{t}] = {targets[t]} is neither in [0, {vocab}) nor {IgnoreTarget} (ignore).");
        }
    }
}
