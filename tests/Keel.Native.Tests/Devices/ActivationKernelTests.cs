namespace Keel.Native.Tests.Devices;

/// <summary>kernels/activations.cu (SwiGLU, GELU) against the CPU reference device, in BFloat16 and Float32.</summary>
public class ActivationKernelTests
{
    public static TheoryData<DeviceKind, DType> DevicesAndTypes()
    {
        var data = new TheoryData<DeviceKind, DType>();
        foreach (var kind in new[] { DeviceKind.Emulated, DeviceKind.Cuda })
            foreach (var dtype in new[] { DType.BFloat16, DType.Float32 })
                data.Add(kind, dtype);
        return data;
    }

    [Theory]
    [MemberData(nameof(DevicesAndTypes))]
    public void SwiGluForwardAndBackwardMatchTheReference(DeviceKind kind, DType dtype)
    {
        var device = TestDevices.Get(kind);
        foreach (var (rows, ffn) in new[] { (1, 8), (37, 1000), (3, 8) })
        {
            var rng = new Random(rows * 7919 + ffn);
            var gateUp = DeviceData.Random(rng, rows * 2L * ffn, scale: 3);
            var dh = DeviceData.Random(rng, (long)rows * ffn);
            var expected = SwiGlu(TestDevices.Reference, dtype, rows, ffn, gateUp, dh);
            var actual = SwiGlu(device, dtype, rows, ffn, gateUp, dh);
            DeviceData.AssertClose(expected.H, actual.H, Tolerance(dtype), $"SwiGLU h [{rows}, {ffn}] {dtype}");
            DeviceData.AssertClose(expected.DGateUp, actual.DGateUp, Tolerance(dtype), $"SwiGLU dGateUp [{rows}, {2 * ffn}] {dtype}");
        }
    }

    [Theory]
    [MemberData(nameof(DevicesAndTypes))]
    public void GeluForwardAndBackwardMatchTheReferenceAlsoInPlace(DeviceKind kind, DType dtype)
    {
        var device = TestDevices.Get(kind);
        foreach (var n in new[] { 1, 7, 37_003 })
        {
            var rng = new Random(n);
            var x = DeviceData.Random(rng, n, scale: 3);
            var dy = DeviceData.Random(rng, n);
            var expected = Gelu(TestDevices.Reference, dtype, x, dy, inPlace: false);
            foreach (var inPlace in new[] { false, true })
            {
                var actual = Gelu(device, dtype, x, dy, inPlace);
                DeviceData.AssertClose(expected.Y, actual.Y, Tolerance(dtype), $"GELU y of {n} {dtype}, in place {inPlace}");
                DeviceData.AssertClose(expected.Dx, actual.Dx, Tolerance(dtype), $"GELU dx of {n} {dtype}, in place {inPlace}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void BadTensorsAreRejectedBeforeLaunch(DeviceKind kind)
    {
        var device = TestDevices.Get(kind);
        using var gateUp = device.Allocate(DType.BFloat16, new TensorShape(4, 32));
        using var h = device.Allocate(DType.BFloat16, new TensorShape(4, 16));
        using var hFloat = device.Allocate(DType.Float32, new TensorShape(4, 16));
        using var ints = device.Allocate(DType.Int32, new TensorShape(4, 32));
        using var narrow = device.Allocate(DType.BFloat16, new TensorShape(4, 24)); // F = 12, not a multiple of 8
        using var big = device.Allocate(DType.BFloat16, new TensorShape(4 * 32 + 8));

        Assert.Throws<ArgumentException>("gateUp", () => device.SwiGluForward(ints, h));
        Assert.Throws<ArgumentException>("gateUp", () => device.SwiGluForward(narrow, h.Tensor.Slice(0, 48)));
        Assert.Throws<ArgumentException>("gateUp", () => device.SwiGluForward(big.Tensor.Slice(1, 128).Reshape(new TensorShape(4, 32)), h));
        Assert.Throws<ArgumentException>("h", () => device.SwiGluForward(gateUp, hFloat));
        Assert.Throws<ArgumentException>("h", () => device.SwiGluForward(gateUp, h.Tensor.Slice(0, 32)));
        Assert.Throws<ArgumentException>("h", () => device.SwiGluForward(gateUp, big.Tensor.Slice(1, 64)));
        Assert.Throws<ArgumentException>("h", () => device.SwiGluForward(gateUp, gateUp.Tensor.Slice(64, 64)));
        Assert.Throws<ArgumentException>("dh", () => device.SwiGluBackward(gateUp, hFloat, gateUp));
        Assert.Throws<ArgumentException>("dGateUp", () => device.SwiGluBackward(gateUp, h, gateUp));

        Assert.Throws<ArgumentException>("x", () => device.GeluForward(ints, ints));
        Assert.Throws<ArgumentException>("y", () => device.GeluForward(h, hFloat));
        Assert.Throws<ArgumentException>("y", () => device.GeluForward(big.Tensor.Slice(0, 64), big.Tensor.Slice(8, 64)));
        Assert.Throws<ArgumentException>("x", () => device.GeluForward(big.Tensor.Slice(1, 64), h));
        Assert.Throws<ArgumentException>("dx", () => device.GeluBackward(h, h, h));
        Assert.Throws<ArgumentException>("dy", () => device.GeluBackward(h, hFloat, h));
    }

    private static double Tolerance(DType dtype) => dtype == DType.BFloat16 ? 1e-2 : 1e-5;

    private static (float[] H, float[] DGateUp) SwiGlu(IDevice device, DType dtype, int rows, int ffn, float[] gateUp, float[] dh)
    {
        using var g = DeviceData.Upload(device, gateUp, dtype, new TensorShape(rows, 2 * ffn));
        using var d = DeviceData.Upload(device, dh, dtype, new TensorShape(rows, ffn));
        using var h = DeviceData.Poisoned(device, dtype, new TensorShape(rows, ffn));
        using var dg = DeviceData.Poisoned(device, dtype, new TensorShape(rows, 2 * ffn));
        device.SwiGluForward(g, h);
        device.SwiGluBackward(g, d, dg);
        return (DeviceData.Download(device, h), DeviceData.Download(device, dg));
    }

    private static (float[] Y, float[] Dx) Gelu(IDevice device, DType dtype, float[] x, float[] dy, bool inPlace)
    {
        var shape = new TensorShape(x.Length);
        using var input = DeviceData.Upload(device, x, dtype, shape);
        using var gradient = DeviceData.Upload(device, dy, dtype, shape);
        using var y = DeviceData.Poisoned(device, dtype, shape);
        using var dx = DeviceData.Poisoned(device, dtype, shape);
        // Backward first: in place, the forward overwrites x.
        device.GeluBackward(input, gradient, inPlace ? gradient : dx);
        device.GeluForward(input, inPlace ? input : y);
        return (DeviceData.Download(device, inPlace ? input : y), DeviceData.Download(device, inPlace ? gradient : dx));
    }
}
