namespace Keel.Native.Tests.Devices;

/// <summary>kernels/rope.cu against the reference rotation (fp64 angles), both directions, in place and not.</summary>
public class RopeKernelTests
{
    // Both sides round the same rotation to bf16; they differ only where fp32 and fp64 products round apart (the
    // emulator measures 0 to 7e-7).
    private const double Tolerance = 1e-3;

    public static TheoryData<DeviceKind, int, int, int, int, float> Shapes()
    {
        var data = new TheoryData<DeviceKind, int, int, int, int, float>();
        foreach (var kind in new[] { DeviceKind.Emulated, DeviceKind.Cuda })
        {
            data.Add(kind, 2, 37, 3, 64, 10_000f);   // 8 pairs per thread
            data.Add(kind, 1, 9, 2, 128, 500_000f);  // another theta: the table is rebuilt
            data.Add(kind, 2, 5, 3, 6, 10_000f);     // half = 3: one pair per thread
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void ForwardAndBackwardMatchTheReference(DeviceKind kind, int batch, int sequence, int heads, int headDim, float theta)
    {
        var device = TestDevices.Get(kind);
        var shape = new TensorShape(batch, sequence, heads, headDim);
        var x = Bf16(DeviceData.Random(new Random(sequence * headDim), shape.ElementCount));
        foreach (var inverse in new[] { false, true })
        {
            var expected = Rotate(TestDevices.Reference, x, shape, theta, inverse);
            var actual = Rotate(device, x, shape, theta, inverse);
            DeviceData.AssertClose(expected, actual, Tolerance, $"RoPE {(inverse ? "backward" : "forward")} {shape} theta {theta}");
        }
    }

    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void InPlaceRotationMatchesTheReferenceAndBackwardUndoesForward(DeviceKind kind)
    {
        var device = TestDevices.Get(kind);
        var shape = new TensorShape(3, 20, 2, 64);
        var x = Bf16(DeviceData.Random(new Random(3), shape.ElementCount));
        var expected = Rotate(TestDevices.Reference, x, shape, 10_000f, inverse: false);

        using var buffer = DeviceData.Upload(device, x, DType.BFloat16, shape);
        device.RopeForward(buffer, buffer);
        DeviceData.AssertClose(expected, DeviceData.Download(device, buffer), Tolerance, "in-place forward");
        device.RopeBackward(buffer, buffer);
        DeviceData.AssertClose(x, DeviceData.Download(device, buffer), 4 * Tolerance, "in-place backward of forward (two bf16 roundings)");
    }

    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void AnglesStayAccurateAtPosition16k(DeviceKind kind)
    {
        // A pos * freq formed in fp32 is off by up to about 1e-3 rad at 16k: such a table gives 4e-4 on these rows (measured
        // under emulation); the fp64 table matches the reference bit for bit there.
        var device = TestDevices.Get(kind);
        const int sequence = 16_400, headDim = 128;
        var shape = new TensorShape(1, sequence, 1, headDim);
        var x = Bf16(DeviceData.Random(new Random(16), shape.ElementCount));
        var expected = Rotate(TestDevices.Reference, x, shape, 10_000f, inverse: false);
        var actual = Rotate(device, x, shape, 10_000f, inverse: false);
        var last = (sequence - 400) * headDim;
        DeviceData.AssertClose(expected.AsSpan(last), actual.AsSpan(last), 1e-4, "RoPE of positions 16000..16399");
    }

    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void BadArgumentsAreRejectedBeforeLaunch(DeviceKind kind)
    {
        var device = TestDevices.Get(kind);
        using var x = device.Allocate(DType.BFloat16, new TensorShape(1, 4, 2, 8));
        using var odd = device.Allocate(DType.BFloat16, new TensorShape(1, 4, 2, 7));
        using var floats = device.Allocate(DType.Float32, new TensorShape(1, 4, 2, 8));
        using var flat = device.Allocate(DType.BFloat16, new TensorShape(64));
        using var wide = device.Allocate(DType.BFloat16, new TensorShape(1, 4, 2, 9));
        var shifted = wide.Tensor.Slice(8, 64).Reshape(new TensorShape(1, 4, 2, 8));

        Assert.Throws<ArgumentException>("output", () => device.RopeForward(x, floats));
        Assert.Throws<ArgumentException>("x", () => device.RopeForward(flat, flat));
        Assert.Throws<ArgumentException>("x", () => device.RopeForward(odd, odd));
        Assert.Throws<ArgumentOutOfRangeException>("theta", () => device.RopeForward(x, x, theta: 1f));
        Assert.Throws<ArgumentException>("dx", () => device.RopeBackward(wide.Tensor.Slice(0, 64).Reshape(x.Tensor.Shape), shifted));
    }

    private static float[] Rotate(IDevice device, float[] x, TensorShape shape, float theta, bool inverse)
    {
        var dtype = device == TestDevices.Reference ? DType.Float32 : DType.BFloat16;
        using var input = DeviceData.Upload(device, x, dtype, shape);
        using var output = DeviceData.Poisoned(device, dtype, shape);
        if (inverse) device.RopeBackward(input, output, theta);
        else device.RopeForward(input, output, theta);
        // The reference computes in fp64 and rounds to fp32 here; round to bf16 as the kernel's output is.
        var result = DeviceData.Download(device, output);
        return dtype == DType.Float32 ? Bf16(result) : result;
    }

    private static float[] Bf16(float[] values) => Array.ConvertAll(values, BFloat16.Round);
}
