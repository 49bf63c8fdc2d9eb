namespace Keel.Native.Tests.Model;

/// <summary>Initialization as docs/model.md states it: every matrix N(0, 0.02²), DeepNorm's FFN, V and O scaled by (8M)^(-1/4), gains 1, biases 0.</summary>
public sealed class InitializationTests
{
    [Theory]
    [InlineData(Architecture.Keel)]
    [InlineData(Architecture.DeepNorm)]
    public void MatricesAreNormalWithTheStatedDeviationGainsOneBiasesAndPaddingZero(Architecture architecture)
    {
        // Vocabulary 300: the embedding table and LM head have 20 padded rows each, which must start at zero too.
        var config = new ModelConfig
        {
            Architecture = architecture, Norm = NormKind.Layer, VocabularySize = 300, Hidden = 64, Heads = 4, KvHeads = 2, FeedForwardSize = 96,
            SubLayers = 8, SequenceLength = 8, TiedEmbeddings = false,
        };
        using var device = new CpuDevice();
        using var model = new KeelModel(device, config, ModelPrecision.Float64, batchSize: 1);
        var flat = new double[model.Layout.Length];
        Array.Fill(flat, double.NaN);
        device.CopyFromHost<double>(flat, model.Parameters);
        model.Initialize(seed: 7);
        model.ReadParameters<double>(flat);

        // M = 4 blocks: DeepNorm scales V, O and the FFN by 32^(-1/4).
        var scaled = architecture == Architecture.DeepNorm ? 0.02 * Math.Pow(32, -0.25) : 0.02;
        var covered = new bool[flat.Length];
        foreach (var t in model.Layout.Tensors)
        {
            var values = flat.AsSpan((int)t.Offset, (int)t.Length).ToArray();
            for (var i = 0; i < values.Length; i++) covered[t.Offset + i] = true;
            if (!t.Decayed)
            {
                Assert.All(values, v => Assert.Equal(t.Name.EndsWith(".bias", StringComparison.Ordinal) ? 0.0 : 1.0, v));
                continue;
            }
            var expected = t.Name.Contains("v_proj", StringComparison.Ordinal) || t.Name.Contains("o_proj", StringComparison.Ordinal) || t.Name.Contains(".mlp.", StringComparison.Ordinal)
                ? scaled : 0.02;
            var mean = values.Average();
            var std = Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / (values.Length - 1));
            // Sample deviation of n normals: relative error about 1/sqrt(2n), at most 1/sqrt(2·1024) here; 5 of those.
            Assert.True(Math.Abs(std / expected - 1) < 5 / Math.Sqrt(2.0 * values.Length), $"{t.Name}: std {std}, expected {expected}");
            Assert.True(Math.Abs(mean) < 5 * expected / Math.Sqrt(values.Length), $"{t.Name}: mean {mean}");
        }
        for (var i = 0; i < flat.Length; i++)
            if (!covered[i]) Assert.Equal(0.0, flat[i]);
    }
}
