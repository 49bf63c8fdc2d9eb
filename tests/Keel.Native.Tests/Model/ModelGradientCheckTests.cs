namespace Keel.Native.Tests.Model;

/// <summary>
/// The whole model's analytic gradient (forward + backward through every sub-layer, the LM head, the input stage
/// and the embedding) against fp64 central differences of the mean token loss, for elements of every parameter
/// tensor, in every architecture and with each norm, FFN and head option.
/// </summary>
public sealed class ModelGradientCheckTests
{
    public static TheoryData<Architecture, NormKind, FeedForwardKind, bool> Variants() => new()
    {
        { Architecture.Keel, NormKind.Rms, FeedForwardKind.SwiGlu, true },
        { Architecture.Keel, NormKind.Layer, FeedForwardKind.Gelu, false },
        { Architecture.PreLN, NormKind.Rms, FeedForwardKind.SwiGlu, false },
        { Architecture.PreLN, NormKind.Layer, FeedForwardKind.SwiGlu, true },
        { Architecture.PostLN, NormKind.Layer, FeedForwardKind.Gelu, true },
        { Architecture.PostLN, NormKind.Rms, FeedForwardKind.SwiGlu, false },
        { Architecture.DeepNorm, NormKind.Layer, FeedForwardKind.SwiGlu, true },
    };

    [Theory]
    [MemberData(nameof(Variants))]
    public void GradientMatchesFiniteDifferencesForEveryParameterTensor(Architecture architecture, NormKind norm, FeedForwardKind ffn, bool tied)
    {
        var config = TinyModels.Config(architecture, norm, ffn, tied);
        using var device = new CpuDevice();
        using var model = new KeelModel(device, config, ModelPrecision.Float64, batchSize: 2);
        var rng = new Random(1234 + (int)architecture * 10 + (int)norm);
        var (tokens, targets) = TinyModels.Batch(rng, model.Tokens, config.VocabularySize);
        model.SetBatch(tokens, targets);
        var parameters = TinyModels.RandomParameters(model.Layout, rng);

        model.LoadParameters<double>(parameters);
        model.ZeroGradients();
        model.Forward(withLoss: true, lossGradientScale: 1.0f / model.Tokens);
        model.Backward();
        var analytic = new double[model.Layout.Length];
        model.ReadGradients<double>(analytic);

        const double h = 1e-5;
        foreach (var tensor in model.Layout.Tensors)
        {
            // Three elements per tensor: the first, the last and one in between drawn at random.
            foreach (var j in new[] { 0L, tensor.Length - 1, rng.NextInt64(tensor.Length) })
            {
                var at = tensor.Offset + j;
                var saved = parameters[at];
                parameters[at] = saved + h;
                var plus = TinyModels.MeanLoss(model, parameters);
                parameters[at] = saved - h;
                var minus = TinyModels.MeanLoss(model, parameters);
                parameters[at] = saved;
                var numeric = (plus - minus) / (2 * h);
                var error = Math.Abs(numeric - analytic[at]);
                Assert.True(error <= 1e-6 * Math.Max(Math.Abs(numeric), 1e-3),
                    $"{tensor.Name}[{j}]: analytic {analytic[at]:e6}, finite difference {numeric:e6} (error {error:e2})");
            }
        }
    }

    [Fact]
    public void EveryTensorReceivesANonzeroGradient()
    {
        // Guards the check above against a tensor that is silently never used (zero gradient both ways).
        var config = TinyModels.Config(Architecture.Keel, NormKind.Layer);
        using var device = new CpuDevice();
        using var model = new KeelModel(device, config, ModelPrecision.Float64, batchSize: 2);
        var rng = new Random(7);
        var (tokens, targets) = TinyModels.Batch(rng, model.Tokens, config.VocabularySize);
        model.SetBatch(tokens, targets);
        model.LoadParameters<double>(TinyModels.RandomParameters(model.Layout, rng));
        model.ZeroGradients();
        model.Forward(lossGradientScale: 1.0f / model.Tokens);
        model.Backward();
        var gradients = new double[model.Layout.Length];
        model.ReadGradients<double>(gradients);
        foreach (var tensor in model.Layout.Tensors)
        {
            var norm = 0.0;
            for (var j = 0; j < tensor.Length; j++) norm += gradients[tensor.Offset + j] * gradients[tensor.Offset + j];
            Assert.True(norm > 0, $"{tensor.Name} got no gradient.");
        }
    }
}
