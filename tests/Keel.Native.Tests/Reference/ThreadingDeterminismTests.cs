namespace Keel.Native.Tests.Reference;

/// <summary>
/// The reference ops that run heads or rows on several threads give every head and row exactly what it gets alone: a
/// batch of one runs on the calling thread, a batch of many in parallel, and the slices must agree bit for bit (so a CPU
/// run does not depend on the thread count or on what else is in the batch).
/// </summary>
public sealed class ThreadingDeterminismTests
{
    [Theory]
    [InlineData(4, 2, 16, true)]
    [InlineData(4, 4, 6, false)]
    public void AttentionOfABatchEqualsEachSequenceAlone(int queryHeads, int kvHeads, int headDim, bool causal)
    {
        const int batch = 16, sequence = 40;
        var many = new AttentionOptions(batch, sequence, queryHeads, kvHeads, headDim, causal);
        var one = many with { Batch = 1 };
        var rng = new Random(11);
        int qLength = sequence * queryHeads * headDim, kvLength = sequence * kvHeads * headDim;
        float[] q = TestData.Floats(rng, batch * qLength), k = TestData.Floats(rng, batch * kvLength), v = TestData.Floats(rng, batch * kvLength);
        float[] dO = TestData.Floats(rng, batch * qLength);
        float[] o = new float[q.Length], lse = new float[batch * queryHeads * sequence], dq = new float[q.Length], dk = new float[k.Length], dv = new float[v.Length];
        Attention.Forward<float>(many, q, k, v, o, lse);
        Attention.Backward<float>(many, q, k, v, o, lse, dO, dq, dk, dv);

        foreach (var b in new[] { 0, 7, 15 })
        {
            float[] o1 = new float[qLength], lse1 = new float[queryHeads * sequence], dq1 = new float[qLength], dk1 = new float[kvLength], dv1 = new float[kvLength];
            Attention.Forward<float>(one, q.AsSpan(b * qLength, qLength), k.AsSpan(b * kvLength, kvLength), v.AsSpan(b * kvLength, kvLength), o1, lse1);
            Attention.Backward<float>(one, q.AsSpan(b * qLength, qLength), k.AsSpan(b * kvLength, kvLength), v.AsSpan(b * kvLength, kvLength),
                o1, lse1, dO.AsSpan(b * qLength, qLength), dq1, dk1, dv1);
            Assert.Equal(o.AsSpan(b * qLength, qLength).ToArray(), o1);
            Assert.Equal(lse.AsSpan(b * lse1.Length, lse1.Length).ToArray(), lse1);
            Assert.Equal(dq.AsSpan(b * qLength, qLength).ToArray(), dq1);
            Assert.Equal(dk.AsSpan(b * kvLength, kvLength).ToArray(), dk1);
            Assert.Equal(dv.AsSpan(b * kvLength, kvLength).ToArray(), dv1);
        }
    }

    [Fact]
    public void SwiGluOfManyRowsEqualsEachRowAlone()
    {
        const int rows = 600, ffn = 96;
        var rng = new Random(5);
        float[] gateUp = TestData.Floats(rng, rows * 2 * ffn, 4), dh = TestData.Floats(rng, rows * ffn);
        float[] h = new float[rows * ffn], dGateUp = new float[gateUp.Length];
        SwiGlu.Forward<float>(rows, ffn, gateUp, h);
        SwiGlu.Backward<float>(rows, ffn, gateUp, dh, dGateUp);
        foreach (var r in new[] { 0, 301, rows - 1 })
        {
            float[] h1 = new float[ffn], d1 = new float[2 * ffn];
            SwiGlu.Forward<float>(1, ffn, gateUp.AsSpan(r * 2 * ffn, 2 * ffn), h1);
            SwiGlu.Backward<float>(1, ffn, gateUp.AsSpan(r * 2 * ffn, 2 * ffn), dh.AsSpan(r * ffn, ffn), d1);
            Assert.Equal(h.AsSpan(r * ffn, ffn).ToArray(), h1);
            Assert.Equal(dGateUp.AsSpan(r * 2 * ffn, 2 * ffn).ToArray(), d1);
        }
    }
}
