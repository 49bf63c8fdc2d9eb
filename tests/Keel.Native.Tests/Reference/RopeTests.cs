namespace Keel.Native.Tests.Reference;

public class RopeTests
{
    private const int Batch = 2, Sequence = 5, Heads = 3, HeadDim = 8;
    private const int Count = Batch * Sequence * Heads * HeadDim;

    [Fact]
    public void BackwardMatchesFiniteDifferences()
    {
        var rng = new Random(1);
        double[] x = TestData.Doubles(rng, Count), w = TestData.Doubles(rng, Count), dx = TestData.Nans<double>(Count);
        Rope.Backward<double>(Batch, Sequence, Heads, HeadDim, w, dx, theta: 50, positionOffset: 3);
        GradCheck.Check("x", x, dx, () =>
        {
            var output = new double[Count];
            Rope.Forward<double>(Batch, Sequence, Heads, HeadDim, x, output, theta: 50, positionOffset: 3);
            return TestData.Dot(output, w);
        });
    }

    [Fact]
    public void RotationPreservesPairNormsAndBackwardUndoesForward()
    {
        var rng = new Random(2);
        double[] x = TestData.Doubles(rng, Count), output = TestData.Nans<double>(Count), back = TestData.Nans<double>(Count);
        Rope.Forward<double>(Batch, Sequence, Heads, HeadDim, x, output);
        Rope.Backward<double>(Batch, Sequence, Heads, HeadDim, output, back);

        const int half = HeadDim / 2;
        for (var row = 0; row < Count; row += HeadDim)
        for (var i = 0; i < half; i++)
        {
            double before = Math.Sqrt(x[row + i] * x[row + i] + x[row + i + half] * x[row + i + half]);
            double after = Math.Sqrt(output[row + i] * output[row + i] + output[row + i + half] * output[row + i + half]);
            Assert.Equal(before, after, 12);
        }
        TestData.Close(x, back, 1e-12, "backward(forward(x))", floor: 1);
    }

    [Fact]
    public void AnglesFollowThePositionAndFrequency()
    {
        // One head, D = 4: pair i = 1 has freq = theta^(-2/4) = 0.01 for theta = 10^4; position t rotates by 0.01·t.
        var x = new double[] { 0.5, 1.0, -0.25, 2.0 }; // pairs (x0, x2) and (x1, x3)
        var output = TestData.Nans<double>(4);
        Rope.Forward<double>(1, 1, 1, 4, x, output, positionOffset: 7);
        double a0 = 7.0, a1 = 7 * 0.01;
        Assert.Equal(0.5 * Math.Cos(a0) + 0.25 * Math.Sin(a0), output[0], 12);
        Assert.Equal(-0.25 * Math.Cos(a0) + 0.5 * Math.Sin(a0), output[2], 12);
        Assert.Equal(1.0 * Math.Cos(a1) - 2.0 * Math.Sin(a1), output[1], 12);
        Assert.Equal(2.0 * Math.Cos(a1) + 1.0 * Math.Sin(a1), output[3], 12);
    }

    [Fact]
    public void PositionZeroIsTheIdentityAndOffsetShiftsPositions()
    {
        var rng = new Random(3);
        var x = TestData.Floats(rng, Count);
        var full = TestData.Nans<float>(Count);
        Rope.Forward<float>(Batch, Sequence, Heads, HeadDim, x, full);
        for (var b = 0; b < Batch; b++)
        {
            var at = b * Sequence * Heads * HeadDim;
            Assert.Equal(x.AsSpan(at, Heads * HeadDim).ToArray(), full.AsSpan(at, Heads * HeadDim).ToArray());
        }

        // Sequence index t with offset 2 is position t + 2 of the unshifted sequence.
        var row = Heads * HeadDim;
        var tail = x.AsSpan(2 * row, row).ToArray();
        var shifted = TestData.Nans<float>(row);
        Rope.Forward<float>(1, 1, Heads, HeadDim, tail, shifted, positionOffset: 2);
        Assert.Equal(full.AsSpan(2 * row, row).ToArray(), shifted);
    }

    [Fact]
    public void InPlaceEqualsOutOfPlace()
    {
        var rng = new Random(4);
        var x = TestData.Floats(rng, Count);
        var output = TestData.Nans<float>(Count);
        Rope.Forward<float>(Batch, Sequence, Heads, HeadDim, x, output);
        var inPlace = (float[])x.Clone();
        Rope.Forward<float>(Batch, Sequence, Heads, HeadDim, inPlace, inPlace);
        Assert.Equal(output, inPlace);
        Rope.Backward<float>(Batch, Sequence, Heads, HeadDim, inPlace, inPlace);
        for (var i = 0; i < Count; i++) Assert.Equal(x[i], inPlace[i], 1e-6f);
    }

    [Fact]
    public void BadArgumentsThrowNamingTheArgument()
    {
        var x = new float[Count];
        TestData.AssertParam("headDim", () => Rope.Forward<float>(Batch, Sequence, Heads, 7, new float[Batch * Sequence * Heads * 7], new float[Batch * Sequence * Heads * 7]));
        TestData.AssertParam("x", () => Rope.Forward<float>(Batch, Sequence, Heads, HeadDim, x.AsSpan(1), new float[Count]));
        TestData.AssertParam("dx", () => Rope.Backward<float>(Batch, Sequence, Heads, HeadDim, x, new float[Count + 1]));
        TestData.AssertParam("theta", () => Rope.Forward<float>(Batch, Sequence, Heads, HeadDim, x, new float[Count], theta: 0.5f));
        TestData.AssertParam("positionOffset", () => Rope.Forward<float>(Batch, Sequence, Heads, HeadDim, x, new float[Count], positionOffset: -1));
        var shared = new float[Count + 1];
        TestData.AssertParam("output", () => Rope.Forward<float>(Batch, Sequence, Heads, HeadDim, shared.AsSpan(0, Count), shared.AsSpan(1, Count)));
    }
}
