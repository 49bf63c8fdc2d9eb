namespace Keel.Native.Tests.Model;

/// <summary>The embedding table and LM head take the vocabulary rounded up to a multiple of 64 rows; the padding stays zero.</summary>
public sealed class VocabularyPaddingTests
{
    [Theory]
    [InlineData(1, 64)]
    [InlineData(11, 64)]
    [InlineData(64, 64)]
    [InlineData(256, 256)]
    [InlineData(300, 320)]
    [InlineData(50257, 50304)]
    public void PaddedVocabularyIsTheVocabularyRoundedUpToSixtyFour(int vocabulary, int padded) =>
        Assert.Equal(padded, new ModelConfig { VocabularySize = vocabulary }.PaddedVocabularySize);

    [Fact]
    public void AVocabularyWhosePaddingWouldOverflowIsRefusedNamingTheField()
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => new ModelConfig { VocabularySize = int.MaxValue }.Validate());
        Assert.Equal(nameof(ModelConfig.VocabularySize), e.ParamName);
        Assert.Equal(int.MaxValue / 64 * 64, new ModelConfig { VocabularySize = int.MaxValue / 64 * 64 }.Validate().PaddedVocabularySize);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void TheVocabularyMatricesReservePaddedRowsAndTheRestFollowThem(bool tied)
    {
        var config = new ModelConfig { VocabularySize = 300, Hidden = 16, Heads = 2, KvHeads = 1, SubLayers = 4, TiedEmbeddings = tied };
        var layout = new ParameterLayout(config);
        int[] vocabularyMatrices = tied ? [layout.Embedding] : [layout.Embedding, layout.LmHead];
        Assert.Equal(tied, layout.Embedding == layout.LmHead);
        long reserved = 0;
        for (var i = 0; i < layout.Tensors.Count; i++)
        {
            var t = layout.Tensors[i];
            var padded = vocabularyMatrices.Contains(i);
            if (padded) Assert.Equal(new TensorShape(300, 16), t.Shape);
            Assert.Equal(padded ? new TensorShape(320, 16) : t.Shape, t.PaddedShape);
            // No tensor starts inside another's padding.
            if (i + 1 < layout.Tensors.Count)
                Assert.True(layout.Tensors[i + 1].Offset >= t.Offset + t.PaddedLength, $"{layout.Tensors[i + 1].Name} starts inside {t.Name}'s padding");
            reserved += t.PaddedLength;
        }
        Assert.True(layout.Length >= reserved);
        // The parameter count is the model's, without padding.
        Assert.Equal(layout.Tensors.Sum(t => t.Length), layout.ParameterCount);
        Assert.Equal(layout.ParameterCount + vocabularyMatrices.Length * 20L * 16, layout.Tensors.Sum(t => t.PaddedLength));

        using var flat = new CpuDevice().Allocate(DType.Float32, new TensorShape(layout.Length));
        var embedding = layout.Tensors[layout.Embedding];
        Assert.Equal(layout.View(flat, layout.Embedding).Address, layout.PaddedView(flat, layout.Embedding).Address);
        Assert.Equal(embedding.Shape, layout.View(flat, layout.Embedding).Shape);
        Assert.Equal(new TensorShape(320, 16), layout.PaddedView(flat, layout.LmHead).Shape);
        Assert.Equal(new TensorShape(320, 16), layout.PaddedView(flat, layout.Embedding).Shape);
    }

    [Fact]
    public void AVocabularyThatIsAMultipleOfSixtyFourHasNoPadding()
    {
        var layout = new ParameterLayout(new ModelConfig { VocabularySize = 256, TiedEmbeddings = false });
        Assert.All(layout.Tensors, t => Assert.Equal(t.Shape, t.PaddedShape));
    }

    [Fact]
    public void LoadingParametersWithNonzeroPaddingIsRefusedSayingWhere()
    {
        var config = TinyModels.Config(Architecture.Keel, tied: false);
        using var device = new CpuDevice();
        using var model = new KeelModel(device, config, ModelPrecision.Float64, batchSize: 1);
        var layout = model.Layout;
        var flat = TinyModels.RandomParameters(layout, new Random(5));
        var head = layout.Tensors[layout.LmHead];
        var paddedRow = head.Offset + head.Length + 3;
        flat[paddedRow] = 0.5;
        var e = Assert.Throws<ArgumentException>("flat", () => model.LoadParameters<double>(flat));
        Assert.Contains($"flat[{paddedRow}]", e.Message, StringComparison.Ordinal);
        Assert.Contains("lm_head.weight", e.Message, StringComparison.Ordinal);

        flat[paddedRow] = -0.0;
        model.LoadParameters<double>(flat);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void ThePaddedRowsGetExactlyZeroGradientAndGiveZeroLogits(bool tied)
    {
        // V = 11 is padded to 64: the logits' 53 padded columns are products with zero rows, and the loss writes their
        // gradient as zero, so the head's padded rows (and the tied embedding's) receive nothing.
        var config = TinyModels.Config(Architecture.Keel, tied: tied);
        using var device = new CpuDevice();
        using var model = new KeelModel(device, config, ModelPrecision.Float64, batchSize: 2);
        var rng = new Random(17);
        var (tokens, targets) = TinyModels.Batch(rng, model.Tokens, config.VocabularySize);
        model.SetBatch(tokens, targets);
        model.LoadParameters<double>(TinyModels.RandomParameters(model.Layout, rng));
        model.ZeroGradients();
        model.Forward(withLoss: true, lossGradientScale: 0f);
        int v = config.VocabularySize, vp = config.PaddedVocabularySize;
        Assert.Equal(new TensorShape(model.Tokens, vp), model.Logits.Shape);
        var logits = new double[model.Tokens * vp];
        device.CopyToHost<double>(model.Logits, logits);
        for (var t = 0; t < model.Tokens; t++)
        {
            Assert.All(logits.AsSpan(t * vp + v, vp - v).ToArray(), x => Assert.Equal(0.0, x));
            Assert.Contains(logits.AsSpan(t * vp, v).ToArray(), x => x != 0);
        }

        model.Forward(withLoss: true, lossGradientScale: 1f / model.Tokens);
        model.Backward();
        var gradients = new double[model.Layout.Length];
        model.ReadGradients<double>(gradients);
        var head = model.Layout.Tensors[model.Layout.LmHead];
        Assert.All(gradients.AsSpan((int)(head.Offset + head.Length), (int)(head.PaddedLength - head.Length)).ToArray(), g => Assert.Equal(0.0, g));
        Assert.Contains(gradients.AsSpan((int)head.Offset, (int)head.Length).ToArray(), g => g != 0);
    }
}
