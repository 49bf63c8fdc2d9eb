using Keel.Native.Model;
using Keel.Native.Numerics;
using Keel.Native.Reference;

namespace Keel.Native.Training;

/// <summary>
/// Generates text from a model built with batch size 1: each new token is drawn from the softmax of the last
/// position's logits at a temperature, among the top-k, with a seeded generator. The context is the last
/// SequenceLength tokens; positions after it are padded and, the attention being causal, do not affect it. Only the
/// vocabulary's columns of the logits are drawn from, never the LM head's padded ones, so every id is below
/// <see cref="ModelConfig.VocabularySize"/>.
/// </summary>
public static class TextSampler
{
    /// <summary>The prompt followed by up to <paramref name="maxTokens"/> generated tokens, decoded.</summary>
    /// <param name="model">A model with <see cref="KeelModel.BatchSize"/> 1.</param>
    /// <param name="tokenizer">The model's tokenizer.</param>
    /// <param name="prompt">Text to continue; may be empty (generation then starts from a newline).</param>
    /// <param name="maxTokens">Tokens to generate.</param>
    /// <param name="temperature">Softmax temperature; 0 picks the most likely token.</param>
    /// <param name="topK">Draw among the k most likely tokens; 0 for all.</param>
    /// <param name="seed">Seeds the draws.</param>
    public static string Generate(KeelModel model, ITextTokenizer tokenizer, string prompt, int maxTokens, double temperature, int topK, ulong seed)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(prompt);
        if (model.BatchSize != 1) throw new ArgumentException($"Sampling needs a model built with batch size 1, not {model.BatchSize}.", nameof(model));
        ArgumentOutOfRangeException.ThrowIfNegative(maxTokens);
        if (!(temperature >= 0 && double.IsFinite(temperature))) throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "temperature must be finite and not negative.");
        ArgumentOutOfRangeException.ThrowIfNegative(topK);

        var ids = new List<int>(tokenizer.Encode(prompt.Length == 0 ? "\n" : prompt));
        var promptLength = prompt.Length == 0 ? 1 : ids.Count;
        int s = model.Config.SequenceLength, vocab = model.Config.VocabularySize, stride = model.Config.PaddedVocabularySize;
        var window = new int[s];
        var ignore = new int[s];
        Array.Fill(ignore, CrossEntropy.IgnoreTarget);
        var logits = new double[s * stride];
        var floats = model.Precision.Master == DType.Float32 ? new float[s * stride] : null;
        var random = new SeededRandom(seed, 0x73616D70UL);
        var order = new int[vocab];
        var weights = new double[vocab];
        for (var n = 0; n < maxTokens; n++)
        {
            var context = Math.Min(ids.Count, s);
            Array.Clear(window);
            ids.CopyTo(ids.Count - context, window, 0, context);
            model.SetBatch(window, ignore);
            model.Forward(withLoss: false);
            if (floats is not null)
            {
                model.Device.CopyToHost<float>(model.Logits, floats);
                for (var i = 0; i < floats.Length; i++) logits[i] = floats[i];
            }
            else
            {
                model.Device.CopyToHost<double>(model.Logits, logits);
            }
            ids.Add(Draw(logits.AsSpan((context - 1) * stride, vocab), temperature, topK, ref random, order, weights));
        }
        return tokenizer.Decode(ids.ToArray().AsSpan(prompt.Length == 0 ? promptLength : 0));
    }

    private static int Draw(ReadOnlySpan<double> row, double temperature, int topK, ref SeededRandom random, int[] order, double[] weights)
    {
        for (var i = 0; i < order.Length; i++) order[i] = i;
        var values = row.ToArray();
        Array.Sort(values.Select(v => -v).ToArray(), order);
        if (temperature == 0) return order[0];
        var k = topK == 0 ? order.Length : Math.Min(topK, order.Length);
        var max = row[order[0]];
        double total = 0;
        for (var i = 0; i < k; i++) total += weights[i] = Math.Exp((row[order[i]] - max) / temperature);
        var pick = random.NextDouble() * total;
        for (var i = 0; i < k; i++)
        {
            pick -= weights[i];
            if (pick <= 0) return order[i];
        }
        return order[k - 1];
    }
}
