namespace Keel.Native.Tests.Training;

/// <summary>TextSampler draws only the vocabulary's ids, never a column of the LM head's padding.</summary>
public sealed class TextSamplerTests
{
    [Theory]
    [InlineData(0.0, 0)]
    [InlineData(1.0, 0)]
    [InlineData(1.0, 3)]
    public void SamplingNeverDrawsAPaddedId(double temperature, int topK)
    {
        // Vocabulary 300 padded to 320; the device writes 1000 into every padded logit after the head's GEMM, so a sampler
        // that looked past the vocabulary would pick a padded id nearly every time.
        var config = new ModelConfig { VocabularySize = 300, Hidden = 16, Heads = 2, KvHeads = 1, FeedForwardSize = 32, SubLayers = 2, SequenceLength = 8 };
        using var device = new PaddedLogitsDevice(config);
        using var model = new KeelModel(device, config, ModelPrecision.Float32, batchSize: 1);
        model.Initialize(seed: 3);
        var tokenizer = new RecordingTokenizer(config.VocabularySize);
        TextSampler.Generate(model, tokenizer, "ab", maxTokens: 40, temperature, topK, seed: 11);
        Assert.True(device.PaddedLogitsWritten >= 40, "the device never saw the head's logits");
        Assert.Equal(2 + 40, tokenizer.Decoded.Count);
        Assert.All(tokenizer.Decoded, id => Assert.InRange(id, 0, config.VocabularySize - 1));
    }

    /// <summary>Fills the padded columns of every [tokens, Vp] GEMM output (the logits) with a large value.</summary>
    private sealed class PaddedLogitsDevice(ModelConfig config) : ForwardingDevice
    {
        public int PaddedLogitsWritten { get; private set; }

        public override void Gemm(Tensor a, bool transposeA, Tensor b, bool transposeB, Tensor c, float alpha = 1f, float beta = 0f)
        {
            base.Gemm(a, transposeA, b, transposeB, c, alpha, beta);
            int v = config.VocabularySize, vp = config.PaddedVocabularySize;
            if (c.Shape.Last != vp || c.Shape.Rank != 2) return;
            var host = new float[c.Length];
            Inner.CopyToHost<float>(c, host);
            for (var row = 0; row < c.Shape.Rows; row++) host.AsSpan(row * vp + v, vp - v).Fill(1000f);
            Inner.CopyFromHost<float>(host, c);
            PaddedLogitsWritten++;
        }
    }

    /// <summary>Ids are characters; decoding records every id it is given.</summary>
    private sealed class RecordingTokenizer(int vocabulary) : ITextTokenizer
    {
        public List<int> Decoded { get; } = [];
        public TokenizerKind Kind => TokenizerKind.Byte;
        public int VocabularySize => vocabulary;
        public int[] Encode(string text) => [.. text.Select(c => (int)c)];

        public string Decode(ReadOnlySpan<int> ids)
        {
            Decoded.AddRange(ids.ToArray());
            return new string([.. ids.ToArray().Select(id => (char)id)]);
        }
    }
}
