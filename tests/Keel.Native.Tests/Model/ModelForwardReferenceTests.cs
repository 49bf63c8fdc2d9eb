namespace Keel.Native.Tests.Model;

/// <summary>
/// Each architecture's forward pass against a computation written out by hand here from docs/model.md
/// (plain loops over doubles, no device and no reference op), on one tiny example: the logits and token losses
/// must agree to fp64 rounding.
/// </summary>
public sealed class ModelForwardReferenceTests
{
    public static TheoryData<Architecture, NormKind, FeedForwardKind, bool> Variants() => new()
    {
        { Architecture.Keel, NormKind.Rms, FeedForwardKind.SwiGlu, true },
        { Architecture.Keel, NormKind.Layer, FeedForwardKind.Gelu, false },
        { Architecture.PreLN, NormKind.Rms, FeedForwardKind.SwiGlu, false },
        { Architecture.PostLN, NormKind.Layer, FeedForwardKind.SwiGlu, true },
        { Architecture.DeepNorm, NormKind.Layer, FeedForwardKind.Gelu, true },
    };

    [Theory]
    [MemberData(nameof(Variants))]
    public void ForwardMatchesTheHandWrittenEquations(Architecture architecture, NormKind norm, FeedForwardKind ffn, bool tied)
    {
        var config = TinyModels.Config(architecture, norm, ffn, tied) with { SubLayers = 6 };
        using var device = new CpuDevice();
        using var model = new KeelModel(device, config, ModelPrecision.Float64, batchSize: 1);
        var rng = new Random(99 + (int)architecture);
        var (tokens, targets) = TinyModels.Batch(rng, model.Tokens, config.VocabularySize);
        var parameters = TinyModels.RandomParameters(model.Layout, rng);
        model.SetBatch(tokens, targets);
        model.LoadParameters<double>(parameters);
        // The logits are [tokens, Vp] with Vp = 64 for the vocabulary of 11: the padded columns come from the head's zero rows.
        int vocab = config.VocabularySize, vp = config.PaddedVocabularySize;
        var logits = new double[model.Tokens * vp];
        Array.Fill(logits, double.NaN);
        model.Forward();
        device.CopyToHost<double>(model.Logits, logits);
        var losses = new double[model.Tokens];
        device.CopyToHost<double>(model.Losses, losses);

        var expected = new HandWrittenModel(config, model.Layout, parameters).Logits(tokens);
        for (var t = 0; t < model.Tokens; t++)
        {
            for (var j = 0; j < vp; j++)
            {
                double actual = logits[t * vp + j], wanted = j < vocab ? expected[t * vocab + j] : 0;
                Assert.True(Math.Abs(actual - wanted) <= 1e-10 * Math.Max(1, Math.Abs(wanted)), $"logit [{t}, {j}]: {actual} vs {wanted}");
            }
        }
        for (var t = 0; t < model.Tokens; t++)
        {
            var row = expected.AsSpan(t * vocab, vocab);
            var max = double.NegativeInfinity;
            foreach (var v in row) max = Math.Max(max, v);
            var sum = 0.0;
            foreach (var v in row) sum += Math.Exp(v - max);
            var loss = max + Math.Log(sum) - row[targets[t]];
            Assert.True(Math.Abs(losses[t] - loss) <= 1e-10 * Math.Max(1, loss), $"loss {t}: {losses[t]} vs {loss}");
        }
    }

    [Fact]
    public void KeelAlphaIsTheSubLayerCountAfterTheFirstTwo()
    {
        var layout = new ParameterLayout(TinyModels.Config(Architecture.Keel) with { SubLayers = 8 });
        Assert.Equal((1f, false, true), Options(layout, 0));
        Assert.Equal((1f, true, true), Options(layout, 1));
        for (var l = 2; l < 7; l++) Assert.Equal((8f, true, true), Options(layout, l));
        Assert.Equal((8f, true, false), Options(layout, 7));
        var deep = new ParameterLayout(TinyModels.Config(Architecture.DeepNorm) with { SubLayers = 8 });
        Assert.Equal(((float)Math.Pow(8, 0.25), true, false), Options(deep, 0));
        var overridden = new ParameterLayout(TinyModels.Config(Architecture.Keel) with { SubLayers = 8, Alpha = 3 });
        Assert.Equal((3f, true, true), Options(overridden, 4));

        static (float, bool, bool) Options(ParameterLayout layout, int l)
        {
            var o = layout.ResidualNorm(l);
            return (o.Alpha, o.OutputNorm, o.InputNorm);
        }
    }

    /// <summary>The model written out directly: x_{l+1} = N_out(alpha·x_l + F_l(N_in(x_l))) with the first-layer and baseline rules.</summary>
    private sealed class HandWrittenModel(ModelConfig c, ParameterLayout layout, double[] p)
    {
        private readonly int _h = c.Hidden, _s = c.SequenceLength;

        public double[] Logits(int[] tokens)
        {
            var x = new double[_s][];
            for (var t = 0; t < _s; t++) x[t] = Matrix("model.embed_tokens.weight", c.VocabularySize, _h)[tokens[t]];
            var L = c.SubLayers;
            for (var l = 0; l < L; l++)
            {
                var block = $"model.layers.{l / 2}.";
                var attention = l % 2 == 0;
                double alpha;
                bool inNorm, outNorm;
                switch (c.Architecture)
                {
                    case Architecture.Keel:
                        alpha = l < 2 ? 1 : L;
                        inNorm = true;
                        outNorm = l > 0;
                        break;
                    case Architecture.PreLN:
                        (alpha, inNorm, outNorm) = (1, true, false);
                        break;
                    case Architecture.PostLN:
                        (alpha, inNorm, outNorm) = (1, false, true);
                        break;
                    default:
                        // a = (2M)^(1/4) = L^(1/4), rounded to fp32 as the residual-norm op takes it.
                        (alpha, inNorm, outNorm) = ((float)Math.Pow(L, 0.25), false, true);
                        break;
                }
                var inName = block + (attention ? "input_layernorm" : "post_attention_layernorm");
                var z = x.Select(row => inNorm ? Norm(row, inName) : row).ToArray();
                var f = attention ? Attention(z, block) : FeedForward(z, block);
                var outName = block + (attention ? "attention_output_norm" : "mlp_output_norm");
                for (var t = 0; t < _s; t++)
                {
                    var sum = new double[_h];
                    for (var j = 0; j < _h; j++) sum[j] = alpha * x[t][j] + f[t][j];
                    x[t] = outNorm ? Norm(sum, outName) : sum;
                }
            }
            if (c.Architecture == Architecture.PreLN) x = x.Select(row => Norm(row, "model.norm")).ToArray();
            var head = Matrix(c.TiedEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight", c.VocabularySize, _h);
            return x.SelectMany(row => MatVec(head, row)).ToArray();
        }

        private double[][] Attention(double[][] z, string block)
        {
            int d = c.HeadDim, heads = c.Heads, group = c.Heads / c.KvHeads;
            var q = z.Select(r => MatVec(Matrix(block + "self_attn.q_proj.weight", heads * d, _h), r)).ToArray();
            var k = z.Select(r => MatVec(Matrix(block + "self_attn.k_proj.weight", c.KvHeads * d, _h), r)).ToArray();
            var v = z.Select(r => MatVec(Matrix(block + "self_attn.v_proj.weight", c.KvHeads * d, _h), r)).ToArray();
            for (var t = 0; t < _s; t++)
            {
                Rotate(q[t], t, heads, d);
                Rotate(k[t], t, c.KvHeads, d);
            }
            var o = new double[_s][];
            for (var i = 0; i < _s; i++)
            {
                o[i] = new double[heads * d];
                for (var hh = 0; hh < heads; hh++)
                {
                    var g = hh / group;
                    var scores = new double[i + 1];
                    for (var j = 0; j <= i; j++)
                    {
                        double dot = 0;
                        for (var e = 0; e < d; e++) dot += q[i][hh * d + e] * k[j][g * d + e];
                        scores[j] = dot / Math.Sqrt(d);
                    }
                    var max = scores.Max();
                    var weights = scores.Select(s => Math.Exp(s - max)).ToArray();
                    var total = weights.Sum();
                    for (var j = 0; j <= i; j++)
                        for (var e = 0; e < d; e++) o[i][hh * d + e] += weights[j] / total * v[j][g * d + e];
                }
            }
            var wo = Matrix(block + "self_attn.o_proj.weight", _h, heads * d);
            return o.Select(r => MatVec(wo, r)).ToArray();
        }

        private double[][] FeedForward(double[][] z, string block)
        {
            int f = c.FeedForwardSize;
            var up = Matrix(block + "mlp.up_proj.weight", f, _h);
            var down = Matrix(block + "mlp.down_proj.weight", _h, f);
            return z.Select(r =>
            {
                var u = MatVec(up, r);
                double[] h;
                if (c.FeedForward == FeedForwardKind.SwiGlu)
                {
                    var g = MatVec(Matrix(block + "mlp.gate_proj.weight", f, _h), r);
                    h = g.Select((gv, j) => gv / (1 + Math.Exp(-gv)) * u[j]).ToArray();
                }
                else
                {
                    h = u.Select(uv => 0.5 * uv * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (uv + 0.044715 * uv * uv * uv)))).ToArray();
                }
                return MatVec(down, h);
            }).ToArray();
        }

        private void Rotate(double[] row, int position, int heads, int d)
        {
            for (var hh = 0; hh < heads; hh++)
                for (var i = 0; i < d / 2; i++)
                {
                    var angle = position * Math.Pow(c.RopeTheta, -2.0 * i / d);
                    double a = row[hh * d + i], b = row[hh * d + i + d / 2];
                    row[hh * d + i] = a * Math.Cos(angle) - b * Math.Sin(angle);
                    row[hh * d + i + d / 2] = b * Math.Cos(angle) + a * Math.Sin(angle);
                }
        }

        private double[] Norm(double[] row, string name)
        {
            var gain = Vector(name + ".weight");
            var mean = c.Norm == NormKind.Layer ? row.Average() : 0;
            var variance = row.Select(v => (v - mean) * (v - mean)).Average();
            var rstd = 1 / Math.Sqrt(variance + c.NormEpsilon);
            var bias = c.Norm == NormKind.Layer ? Vector(name + ".bias") : new double[_h];
            return row.Select((v, j) => gain[j] * (v - mean) * rstd + bias[j]).ToArray();
        }

        private double[][] Matrix(string name, int rows, int columns)
        {
            var t = layout.Tensors[layout.IndexOf(name)];
            Assert.Equal(new Keel.Native.Devices.TensorShape(rows, columns), t.Shape);
            return Enumerable.Range(0, rows).Select(r => p.AsSpan((int)t.Offset + r * columns, columns).ToArray()).ToArray();
        }

        private double[] Vector(string name)
        {
            var index = layout.IndexOf(name);
            Assert.True(index >= 0, $"no parameter {name}");
            var t = layout.Tensors[index];
            return p.AsSpan((int)t.Offset, (int)t.Length).ToArray();
        }

        private static double[] MatVec(double[][] m, double[] v) => m.Select(row => row.Select((w, j) => w * v[j]).Sum()).ToArray();
    }
}
