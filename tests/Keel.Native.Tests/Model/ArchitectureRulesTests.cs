namespace Keel.Native.Tests.Model;

/// <summary>
/// The architecture table against its equations, row by row: what the op ending each sub-layer does (alpha, output norm,
/// next input norm), which norm tensors the layout holds, the DeepNorm initialization, and alpha refused where it has no
/// meaning.
/// </summary>
public sealed class ArchitectureRulesTests
{
    // L = 6 (M = 3). Per op from the input stage (−1) to the last sub-layer: (alpha, N_out, N_in of what follows).
    public static TheoryData<Architecture, string> Rows() => new()
    {
        // x1 = x0 + Attn(N(x0)); x2 = N(x1 + FFN(N(x1))); then N(L·x + F(N(x))); the LM head reads x_L.
        { Architecture.Keel, "1 - in | 1 - in | 1 out in | 6 out in | 6 out in | 6 out in | 6 out -" },
        // x + F(N(x)), then the final norm.
        { Architecture.PreLN, "1 - in | 1 - in | 1 - in | 1 - in | 1 - in | 1 - in | 1 - in" },
        { Architecture.PostLN, "1 - - | 1 out - | 1 out - | 1 out - | 1 out - | 1 out - | 1 out -" },
        // a = (2M)^(1/4) = 6^(1/4) = 1.5651
        { Architecture.DeepNorm, "1 - - | 1.5651 out - | 1.5651 out - | 1.5651 out - | 1.5651 out - | 1.5651 out - | 1.5651 out -" },
    };

    [Theory]
    [MemberData(nameof(Rows))]
    public void EachOpDoesWhatItsArchitecturesEquationSays(Architecture architecture, string expected)
    {
        var layout = new ParameterLayout(TinyModels.Config(architecture) with { SubLayers = 6 });
        var ops = Enumerable.Range(-1, 7).Select(l => layout.ResidualNorm(l))
            .Select(o => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{o.Alpha:0.####} {(o.OutputNorm ? "out" : "-")} {(o.InputNorm ? "in" : "-")}"));
        Assert.Equal(expected, string.Join(" | ", ops));
    }

    [Theory]
    [InlineData(Architecture.Keel, "input_layernorm post_attention_layernorm mlp_output_norm")]
    [InlineData(Architecture.PreLN, "input_layernorm post_attention_layernorm model.norm")]
    [InlineData(Architecture.PostLN, "attention_output_norm mlp_output_norm")]
    [InlineData(Architecture.DeepNorm, "attention_output_norm mlp_output_norm")]
    public void TheLayoutHoldsTheNormsTheRulesRun(Architecture architecture, string firstBlockNorms)
    {
        var layout = new ParameterLayout(TinyModels.Config(architecture) with { SubLayers = 6 });
        var norms = layout.Tensors.Where(t => t.IsGain).Select(t => t.Name[..^".weight".Length]);
        var firstBlock = norms.Where(n => n.StartsWith("model.layers.0.", StringComparison.Ordinal) || n == "model.norm")
                              .Select(n => n.Replace("model.layers.0.", ""));
        Assert.Equal(firstBlockNorms, string.Join(" ", firstBlock));
        var rules = ArchitectureRules.For(architecture);
        for (var l = 0; l < 6; l++)
        {
            Assert.Equal(rules.HasInputNorm(l), layout.InputNorm(l) is not null);
            Assert.Equal(rules.HasOutputNorm(l), layout.OutputNorm(l) is not null);
        }
        Assert.Equal(rules.FinalNorm, layout.FinalNorm is not null);
    }

    [Fact]
    public void DeepNormScalesTheInitOfFfnValueAndOutputProjectionsOnly()
    {
        Assert.Equal(Math.Pow(8.0 * 3, -0.25), ArchitectureRules.DeepNorm.InitScale(6));
        foreach (var other in new[] { ArchitectureRules.Keel, ArchitectureRules.PreLN, ArchitectureRules.PostLN })
            Assert.Equal(1.0, other.InitScale(6));
    }

    [Theory]
    [InlineData(Architecture.PreLN)]
    [InlineData(Architecture.PostLN)]
    public void AlphaIsRefusedWhereTheArchitectureHasNoResidualScale(Architecture architecture)
    {
        var config = TrainingFixtures.TinyConfig with { Architecture = architecture, Alpha = 2 };
        var e = Assert.ThrowsAny<ArgumentException>(() => new KeelModel(BadInputTests.UntouchableDevice.Create(), config, ModelPrecision.Float32, 1));
        Assert.Equal("Alpha", e.ParamName);
        Assert.Contains($"does not apply to {architecture}", e.Message);
        Assert.Equal(1f, (config with { Alpha = null }).ResidualScale);
    }

    [Theory]
    [InlineData(Architecture.Keel)]
    [InlineData(Architecture.DeepNorm)]
    public void AlphaOverridesTheDefaultWhereThereIsOne(Architecture architecture)
    {
        var config = (TinyModels.Config(architecture) with { SubLayers = 6, Alpha = 3 }).Validate();
        Assert.Equal(3f, config.ResidualScale);
        Assert.Equal(3f, new ParameterLayout(config).ResidualNorm(5).Alpha);
    }
}
