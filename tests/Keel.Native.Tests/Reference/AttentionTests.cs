namespace Keel.Native.Tests.Reference;

public class AttentionTests
{
    public static TheoryData<bool, int, int> Flavours() => new()
    {
        { true, 4, 2 },   // causal, grouped-query
        { false, 4, 2 },  // bidirectional, grouped-query
        { true, 2, 2 },   // causal, one kv head per query head
        { false, 3, 1 },  // multi-query
    };

    [Theory]
    [MemberData(nameof(Flavours))]
    public void BackwardMatchesFiniteDifferences(bool causal, int queryHeads, int kvHeads)
    {
        var o = new AttentionOptions(Batch: 2, Sequence: 5, queryHeads, kvHeads, HeadDim: 4, causal);
        int qCount = 2 * 5 * queryHeads * 4, kvCount = 2 * 5 * kvHeads * 4;
        var rng = new Random(queryHeads * 10 + kvHeads + (causal ? 100 : 0));
        double[] q = TestData.Doubles(rng, qCount), k = TestData.Doubles(rng, kvCount), v = TestData.Doubles(rng, kvCount), w = TestData.Doubles(rng, qCount);
        double[] output = TestData.Nans<double>(qCount), lse = TestData.Nans<double>(2 * queryHeads * 5);
        Attention.Forward<double>(o, q, k, v, output, lse);
        TestData.AllFinite<double>(output, "output");
        TestData.AllFinite<double>(lse, "lse");

        double[] dq = TestData.Nans<double>(qCount), dk = TestData.Nans<double>(kvCount), dv = TestData.Nans<double>(kvCount);
        Attention.Backward<double>(o, q, k, v, output, lse, w, dq, dk, dv);

        double Loss()
        {
            double[] o2 = new double[qCount], l2 = new double[2 * queryHeads * 5];
            Attention.Forward<double>(o, q, k, v, o2, l2);
            return TestData.Dot(o2, w);
        }
        GradCheck.Check("q", q, dq, Loss);
        GradCheck.Check("k", k, dk, Loss);
        GradCheck.Check("v", v, dv, Loss);
    }

    [Fact]
    public void OneKeyReturnsItsValue()
    {
        // Sequence 1: every query sees one key, whose value comes back whole; lse is that key's score.
        var o = new AttentionOptions(Batch: 2, Sequence: 1, QueryHeads: 4, KvHeads: 2, HeadDim: 8, Causal: false, Scale: 0.3f);
        var rng = new Random(5);
        float[] q = TestData.Floats(rng, 2 * 4 * 8), k = TestData.Floats(rng, 2 * 2 * 8), v = TestData.Floats(rng, 2 * 2 * 8);
        float[] output = TestData.Nans<float>(q.Length), lse = TestData.Nans<float>(2 * 4);
        Attention.Forward<float>(o, q, k, v, output, lse);
        for (var b = 0; b < 2; b++)
        for (var h = 0; h < 4; h++)
        {
            var kv = (b * 2 + h / 2) * 8;
            Assert.Equal(v.AsSpan(kv, 8).ToArray(), output.AsSpan((b * 4 + h) * 8, 8).ToArray());
            var score = 0.0;
            for (var d = 0; d < 8; d++) score += q[(b * 4 + h) * 8 + d] * (double)k[kv + d];
            Assert.Equal(0.3 * score, lse[b * 4 + h], 5);
        }
    }

    [Fact]
    public void CausalRowsAverageTheVisibleValuesWhenAllKeysAreEqual()
    {
        // Equal keys give equal scores: row i averages v_0..v_i and lse_i = score + log(i + 1).
        const int seq = 6, dim = 4;
        var o = new AttentionOptions(1, seq, 1, 1, dim);
        var rng = new Random(6);
        var key = TestData.Doubles(rng, dim);
        double[] q = TestData.Doubles(rng, seq * dim), k = Enumerable.Range(0, seq).SelectMany(_ => key).ToArray(), v = TestData.Doubles(rng, seq * dim);
        double[] output = TestData.Nans<double>(seq * dim), lse = TestData.Nans<double>(seq);
        Attention.Forward<double>(o, q, k, v, output, lse);
        for (var i = 0; i < seq; i++)
        {
            var score = 0.0;
            for (var d = 0; d < dim; d++) score += q[i * dim + d] * key[d] / 2; // scale 1/sqrt(4)
            Assert.Equal(score + Math.Log(i + 1), lse[i], 12);
            for (var d = 0; d < dim; d++)
                Assert.Equal(Enumerable.Range(0, i + 1).Average(j => v[j * dim + d]), output[i * dim + d], 12);
        }
    }

    [Fact]
    public void BadArgumentsThrowNamingTheArgument()
    {
        var o = new AttentionOptions(1, 3, 4, 2, 8);
        float[] q = new float[3 * 4 * 8], kv = new float[3 * 2 * 8], lse = new float[4 * 3];
        TestData.AssertParam("options", () => Attention.Forward<float>(o with { QueryHeads = 3 }, new float[3 * 3 * 8], kv, kv, new float[3 * 3 * 8], new float[9]));
        TestData.AssertParam("k", () => Attention.Forward<float>(o, q, q, kv, new float[q.Length], lse));
        TestData.AssertParam("logSumExp", () => Attention.Forward<float>(o, q, kv, kv, new float[q.Length], new float[3]));
        TestData.AssertParam("dv", () => Attention.Backward<float>(o, q, kv, kv, q, lse, q, new float[q.Length], new float[kv.Length], new float[q.Length]));
        TestData.AssertParam("HeadDim", () => _ = new AttentionOptions(1, 3, 4, 2, 0));
        TestData.AssertParam("Scale", () => _ = o with { Scale = -1f });
        Assert.Equal(1 / Math.Sqrt(8), o.EffectiveScale);
    }
}
