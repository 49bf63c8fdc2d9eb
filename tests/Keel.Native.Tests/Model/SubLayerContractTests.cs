namespace Keel.Native.Tests.Model;

/// <summary>What a memory planner relies on: a sub-layer re-runs from x_l alone to the very same saved tensors, and the specs describe them.</summary>
public sealed class SubLayerContractTests
{
    [Theory]
    [InlineData(Architecture.Keel)]
    [InlineData(Architecture.PostLN)]
    public void RecomputingASubLayerFromItsInputReproducesItsSavedTensorsBitForBit(Architecture architecture)
    {
        var config = TinyModels.Config(architecture) with { SubLayers = 6 };
        using var device = new CpuDevice();
        using var model = new KeelModel(device, config, ModelPrecision.Float32, batchSize: 2);
        model.Initialize(11);
        var rng = new Random(3);
        var (tokens, targets) = TinyModels.Batch(rng, model.Tokens, config.VocabularySize);
        model.SetBatch(tokens, targets);
        model.Forward();
        foreach (var l in new[] { 0, 3, 5 })
        {
            var subLayer = model.SubLayers[l];
            var before = Snapshot(device, model, l);
            // Poison every saved tensor first, so one the recompute fails to write cannot pass.
            foreach (var spec in subLayer.Saved)
                device.CopyFromHost<float>(Enumerable.Repeat(float.NaN, (int)spec.Shape.ElementCount).ToArray(), subLayer.SavedTensor(spec.Name));
            model.RecomputeSubLayer(l);
            Assert.Equal(before, Snapshot(device, model, l));
        }
    }

    [Fact]
    public void ActivationSpecsListEachSavedTensorWithItsShapeAndType()
    {
        var config = TinyModels.Config(Architecture.Keel, Keel.Native.Reference.NormKind.Layer);
        var layout = new ParameterLayout(config);
        var attention = SubLayer.ActivationSpecs(SubLayerKind.Attention, config, ModelPrecision.Mixed, 3, layout.ResidualNorm(0));
        Assert.Equal(["q", "k", "v", "o", "lse", "f", "x_out", "z_out", "mean_in", "rstd_in"], attention.Select(a => a.Name));
        Assert.Equal(new Keel.Native.Devices.TensorShape(3, 5, 1, 4), attention.Single(a => a.Name == "k").Shape);
        Assert.Equal(Keel.Native.Numerics.DType.BFloat16, attention.Single(a => a.Name == "q").DType);
        Assert.Equal(Keel.Native.Numerics.DType.Float32, attention.Single(a => a.Name == "x_out").DType);
        var ffn = SubLayer.ActivationSpecs(SubLayerKind.FeedForward, config, ModelPrecision.Mixed, 3, layout.ResidualNorm(3));
        Assert.Equal(["gate_up", "h", "f", "x_out", "z_out", "mean_out", "rstd_out"], ffn.Select(a => a.Name));
        Assert.Equal(new Keel.Native.Devices.TensorShape(15, 24), ffn[0].Shape);

        using var device = new CpuDevice();
        using var model = new KeelModel(device, config, ModelPrecision.Float32, batchSize: 3);
        Assert.Equal(SubLayer.ActivationSpecs(SubLayerKind.FeedForward, config, ModelPrecision.Float32, 3, layout.ResidualNorm(1)), model.SubLayers[1].Saved);
        Assert.Equal(model.SubLayers[1].Saved.Sum(a => a.ByteLength), model.SubLayers[1].SavedBytes);
    }

    private static float[][] Snapshot(CpuDevice device, KeelModel model, int l) =>
        [.. model.SubLayers[l].Saved.Select(spec =>
        {
            var values = new float[spec.Shape.ElementCount];
            device.CopyToHost<float>(model.SubLayers[l].SavedTensor(spec.Name), values);
            Assert.All(values, v => Assert.True(float.IsFinite(v), spec.Name));
            return values;
        })];
}
