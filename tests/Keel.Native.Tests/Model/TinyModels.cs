namespace Keel.Native.Tests.Model;

/// <summary>Tiny configs and random batches for the whole-model tests.</summary>
internal static class TinyModels
{
    /// <summary>Vocab 11, hidden 8, 2 heads over 1 KV head (GQA), FFN 12, L = 4, sequence 5.</summary>
    public static ModelConfig Config(Architecture architecture, NormKind norm = NormKind.Rms, FeedForwardKind ffn = FeedForwardKind.SwiGlu, bool tied = true) => new()
    {
        VocabularySize = 11,
        Hidden = 8,
        Heads = 2,
        KvHeads = 1,
        FeedForwardSize = 12,
        FeedForward = ffn,
        SubLayers = 4,
        Norm = norm,
        Architecture = architecture,
        SequenceLength = 5,
        TiedEmbeddings = tied,
    };

    /// <summary>Random token ids and targets (no ignored positions) for a batch of <paramref name="tokens"/>.</summary>
    public static (int[] Tokens, int[] Targets) Batch(Random rng, int tokens, int vocab)
    {
        var ids = new int[tokens];
        var targets = new int[tokens];
        for (var i = 0; i < tokens; i++)
        {
            ids[i] = rng.Next(vocab);
            targets[i] = rng.Next(vocab);
        }
        return (ids, targets);
    }

    /// <summary>
    /// Parameters far from the usual init so every path carries signal: matrices N(0, 0.3²)-like, gains 1 ± 0.3,
    /// biases ± 0.2; padding stays zero.
    /// </summary>
    public static double[] RandomParameters(ParameterLayout layout, Random rng)
    {
        var flat = new double[layout.Length];
        foreach (var t in layout.Tensors)
        {
            for (var j = 0; j < t.Length; j++)
            {
                flat[t.Offset + j] = t.Decayed ? 0.3 * (2 * rng.NextDouble() - 1) * 1.7
                    : t.IsGain ? 1 + 0.3 * (2 * rng.NextDouble() - 1)
                    : 0.2 * (2 * rng.NextDouble() - 1);
            }
        }
        return flat;
    }

    /// <summary>The mean token loss of one forward pass with <paramref name="parameters"/>.</summary>
    public static double MeanLoss(KeelModel model, double[] parameters)
    {
        model.LoadParameters<double>(parameters);
        model.Forward();
        return model.SumLosses() / model.Tokens;
    }
}
