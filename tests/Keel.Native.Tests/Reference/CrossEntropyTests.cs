namespace Keel.Native.Tests.Reference;

public class CrossEntropyTests
{
    private const int Tokens = 5, Vocab = 6;
    private static readonly int[] Targets = [2, CrossEntropy.IgnoreTarget, 0, 5, 2];

    [Fact]
    public void BackwardMatchesFiniteDifferences()
    {
        var rng = new Random(1);
        double[] logits = TestData.Doubles(rng, Tokens * Vocab, scale: 3), dLoss = TestData.Doubles(rng, Tokens);
        var dLogits = TestData.Nans<double>(logits.Length);
        CrossEntropy.Backward<double>(Tokens, Vocab, Vocab, logits, Targets, dLoss, dLogits);
        GradCheck.Check("logits", logits, dLogits, () =>
        {
            var losses = new double[Tokens];
            CrossEntropy.Forward<double>(Tokens, Vocab, Vocab, logits, Targets, losses);
            return TestData.Dot(losses, dLoss);
        });
    }

    [Fact]
    public void SoftmaxRowsSumToOneAndIgnoredTokensGetNothing()
    {
        var rng = new Random(2);
        var logits = TestData.Floats(rng, Tokens * Vocab, scale: 5);
        var dLoss = Enumerable.Repeat(1f, Tokens).ToArray();
        var dLogits = TestData.Nans<float>(logits.Length);
        CrossEntropy.Backward<float>(Tokens, Vocab, Vocab, logits, Targets, dLoss, dLogits);
        for (var t = 0; t < Tokens; t++)
        {
            var row = dLogits.AsSpan(t * Vocab, Vocab).ToArray();
            if (Targets[t] == CrossEntropy.IgnoreTarget)
            {
                Assert.All(row, v => Assert.Equal(0f, v));
                continue;
            }
            // With dloss 1 the row is softmax − onehot: softmax = row + onehot sums to 1 and is positive.
            row[Targets[t]] += 1;
            Assert.All(row, v => Assert.True(v > 0));
            Assert.Equal(1.0, row.Sum(v => (double)v), 6);
        }

        // In place: the gradient may overwrite the logits.
        var inPlace = (float[])logits.Clone();
        CrossEntropy.Backward<float>(Tokens, Vocab, Vocab, inPlace, Targets, dLoss, inPlace);
        Assert.Equal(dLogits, inPlace);
    }

    [Fact]
    public void LossesMatchClosedFormsAndTheMeanSkipsIgnoredTokens()
    {
        // Uniform logits: every loss is log(V). A row with one huge logit on the target: loss ~ 0.
        var logits = new float[Tokens * Vocab];
        var rng = new Random(3);
        for (var t = 0; t < Tokens; t++) Array.Fill(logits, (float)rng.NextDouble() * 100 - 50, t * Vocab, Vocab);
        logits[3 * Vocab + 5] += 200;
        var losses = TestData.Nans<float>(Tokens);
        CrossEntropy.Forward<float>(Tokens, Vocab, Vocab, logits, Targets, losses);
        Assert.Equal((float)Math.Log(Vocab), losses[0], 1e-5f);
        Assert.Equal(0f, losses[1]);
        Assert.Equal(0f, losses[3], 1e-6f);

        var mean = CrossEntropy.Forward<float>(Tokens, Vocab, Vocab, logits, Targets);
        Assert.Equal((losses[0] + losses[2] + losses[3] + losses[4]) / 4.0, mean, 6);
        Assert.True(double.IsNaN(CrossEntropy.Forward<float>(2, Vocab, Vocab, logits.AsSpan(0, 2 * Vocab), [-1, -1])));
    }

    [Fact]
    public void PaddedColumnsStayOutOfTheSoftmaxAndGetZeroGradient()
    {
        // Rows of stride 8 whose last two columns are padding, filled with NaN: the losses and the vocabulary's gradient
        // equal the unpadded problem's, and the padding's gradient is written as zero over a NaN-poisoned output.
        const int stride = Vocab + 2;
        var rng = new Random(4);
        var logits = TestData.Floats(rng, Tokens * Vocab, scale: 3);
        var dLoss = TestData.Floats(rng, Tokens);
        var padded = TestData.Nans<float>(Tokens * stride);
        for (var t = 0; t < Tokens; t++) logits.AsSpan(t * Vocab, Vocab).CopyTo(padded.AsSpan(t * stride));

        var expectedLosses = new float[Tokens];
        var expectedGradient = new float[Tokens * Vocab];
        CrossEntropy.Forward<float>(Tokens, Vocab, Vocab, logits, Targets, expectedLosses);
        CrossEntropy.Backward<float>(Tokens, Vocab, Vocab, logits, Targets, dLoss, expectedGradient);
        var losses = TestData.Nans<float>(Tokens);
        var gradient = TestData.Nans<float>(Tokens * stride);
        CrossEntropy.Forward<float>(Tokens, Vocab, stride, padded, Targets, losses);
        CrossEntropy.Backward<float>(Tokens, Vocab, stride, padded, Targets, dLoss, gradient);
        Assert.Equal(expectedLosses, losses);
        Assert.Equal(CrossEntropy.Forward<float>(Tokens, Vocab, Vocab, logits, Targets), CrossEntropy.Forward<float>(Tokens, Vocab, stride, padded, Targets));
        for (var t = 0; t < Tokens; t++)
        {
            Assert.Equal(expectedGradient.AsSpan(t * Vocab, Vocab), gradient.AsSpan(t * stride, Vocab));
            Assert.Equal([0f, 0f], gradient.AsSpan(t * stride + Vocab, 2).ToArray());
        }

        // In place over the padded logits: the same numbers.
        CrossEntropy.Backward<float>(Tokens, Vocab, stride, padded, Targets, dLoss, padded);
        Assert.Equal(gradient, padded);
    }

    [Fact]
    public void BadArgumentsThrowNamingTheArgument()
    {
        var logits = new float[Tokens * Vocab];
        TestData.AssertParam("targets", () => CrossEntropy.Forward<float>(Tokens, Vocab, Vocab, logits, [0, 1, 2, 3, Vocab]));
        TestData.AssertParam("targets", () => CrossEntropy.Forward<float>(Tokens, Vocab, Vocab, logits, [0, 1, 2, 3, -2], new float[Tokens]));
        TestData.AssertParam("targets", () => CrossEntropy.Forward<float>(Tokens, Vocab, Vocab, logits, [0, 1]));
        TestData.AssertParam("logits", () => CrossEntropy.Forward<float>(Tokens, Vocab, Vocab, logits.AsSpan(1), Targets));
        TestData.AssertParam("losses", () => CrossEntropy.Forward<float>(Tokens, Vocab, Vocab, logits, Targets, new float[1]));
        TestData.AssertParam("dLoss", () => CrossEntropy.Backward<float>(Tokens, Vocab, Vocab, logits, Targets, new float[1], new float[logits.Length]));
        TestData.AssertParam("dLogits", () => CrossEntropy.Backward<float>(Tokens, Vocab, Vocab, logits, Targets, new float[Tokens], logits.AsSpan(1)));
        TestData.AssertParam("vocab", () => CrossEntropy.Forward<float>(0, 0, 0, logits.AsSpan(0, 0), []));
        TestData.AssertParam("stride", () => CrossEntropy.Forward<float>(Tokens, Vocab, Vocab - 1, logits.AsSpan(0, Tokens * (Vocab - 1)), Targets));
        TestData.AssertParam("logits", () => CrossEntropy.Forward<float>(Tokens, Vocab, Vocab + 2, logits, Targets));
        TestData.AssertParam("dLogits", () => CrossEntropy.Backward<float>(Tokens, Vocab, Vocab + 2, new float[Tokens * (Vocab + 2)], Targets, new float[Tokens], logits));
    }
}
