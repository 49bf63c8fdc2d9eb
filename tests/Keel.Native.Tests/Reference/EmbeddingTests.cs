namespace Keel.Native.Tests.Reference;

public class EmbeddingTests
{
    private const int Vocab = 7, Dim = 4;
    private static readonly int[] Tokens = [3, 0, 6, 3, 1, 3, 6];

    [Fact]
    public void ForwardCopiesTheTokensRows()
    {
        var table = TestData.Floats(new Random(1), Vocab * Dim);
        var output = TestData.Nans<float>(Tokens.Length * Dim);
        Embedding.Forward<float>(Vocab, Dim, Tokens, table, output);
        for (var t = 0; t < Tokens.Length; t++)
            Assert.Equal(table.AsSpan(Tokens[t] * Dim, Dim).ToArray(), output.AsSpan(t * Dim, Dim).ToArray());
    }

    [Fact]
    public void BackwardAccumulatesAndMatchesFiniteDifferences()
    {
        var rng = new Random(2);
        double[] table = TestData.Doubles(rng, Vocab * Dim), w = TestData.Doubles(rng, Tokens.Length * Dim);
        var start = TestData.Doubles(rng, Vocab * Dim);
        var dTable = (double[])start.Clone();
        Embedding.Backward<double>(Vocab, Dim, Tokens, w, dTable);

        // Rows of tokens never seen keep their old gradient exactly.
        foreach (var unseen in new[] { 2, 4, 5 })
            Assert.Equal(start.AsSpan(unseen * Dim, Dim).ToArray(), dTable.AsSpan(unseen * Dim, Dim).ToArray());
        // Token 3 appears three times: its rows are summed.
        for (var d = 0; d < Dim; d++) Assert.Equal(start[3 * Dim + d] + w[0 * Dim + d] + w[3 * Dim + d] + w[5 * Dim + d], dTable[3 * Dim + d], 14);

        var increment = dTable.Select((v, i) => v - start[i]).ToArray();
        GradCheck.Check("table", table, increment, () =>
        {
            var output = new double[Tokens.Length * Dim];
            Embedding.Forward<double>(Vocab, Dim, Tokens, table, output);
            return TestData.Dot(output, w);
        }, tolerance: 1e-6);
    }

    [Fact]
    public void BadArgumentsThrowNamingTheArgument()
    {
        TestData.AssertParam("tokens", () => Embedding.Forward<float>(Vocab, Dim, [0, Vocab], new float[Vocab * Dim], new float[2 * Dim]));
        TestData.AssertParam("tokens", () => Embedding.Backward<float>(Vocab, Dim, [-1], new float[Dim], new float[Vocab * Dim]));
        TestData.AssertParam("table", () => Embedding.Forward<float>(Vocab, Dim, [0], new float[Vocab], new float[Dim]));
        TestData.AssertParam("output", () => Embedding.Forward<float>(Vocab, Dim, [0, 1], new float[Vocab * Dim], new float[Dim]));
        TestData.AssertParam("dOutput", () => Embedding.Backward<float>(Vocab, Dim, [0, 1], new float[Dim], new float[Vocab * Dim]));
        TestData.AssertParam("vocab", () => Embedding.Forward<float>(0, Dim, [], [], []));
    }
}
