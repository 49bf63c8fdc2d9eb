namespace Keel.Native.Tests.Devices;

/// <summary>kernels/cast.cu against BFloat16's host conversion, which rounds exactly as the GPU does.</summary>
public class CastKernelTests
{
    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void FloatToBFloat16RoundsToNearestEvenBitForBit(DeviceKind kind)
    {
        var device = TestDevices.Get(kind);
        foreach (var n in new[] { 1, 7, 8, 4099, 100_003 })
        {
            var values = DeviceData.Random(new Random(n), n, scale: 3);
            // Include exact ties, which must round to even.
            values[0] = BitConverter.UInt32BitsToSingle(0x3F80_8000);
            using var source = DeviceData.Upload(device, values, DType.Float32, new TensorShape(n));
            using var destination = DeviceData.Poisoned(device, DType.BFloat16, new TensorShape(n));
            device.Convert(source, destination);
            var actual = new BFloat16[n];
            device.CopyToHost<BFloat16>(destination, actual);
            for (var i = 0; i < n; i++) Assert.Equal(BFloat16.FromSingle(values[i]).Bits, actual[i].Bits);
        }
    }

    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void BFloat16ToFloatIsExact(DeviceKind kind)
    {
        var device = TestDevices.Get(kind);
        foreach (var n in new[] { 3, 16, 5003 })
        {
            var values = DeviceData.Random(new Random(n), n);
            using var source = DeviceData.Upload(device, values, DType.BFloat16, new TensorShape(n));
            using var destination = DeviceData.Poisoned(device, DType.Float32, new TensorShape(n));
            device.Convert(source, destination);
            var actual = DeviceData.Download(device, destination);
            for (var i = 0; i < n; i++) Assert.Equal(BFloat16.Round(values[i]), actual[i]);
        }
    }

    /// <summary>
    /// A kernel op may be the first thing a thread asks of a device (the devices are for one thread at a time, not for
    /// one thread only): on a GPU the launch must make the device's context current itself, or cuLaunchKernel fails.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void AKernelOpRunsFromAThreadThatNeverUsedTheDevice(DeviceKind kind)
    {
        var device = TestDevices.Get(kind);
        const int n = 1003;
        var values = DeviceData.Random(new Random(n), n);
        using var source = DeviceData.Upload(device, values, DType.Float32, new TensorShape(n));
        using var destination = DeviceData.Poisoned(device, DType.BFloat16, new TensorShape(n));
        // Loaded here first, so that the other thread's only driver call is the launch (loading binds the context).
        using (var loaded = DeviceData.Poisoned(device, DType.BFloat16, new TensorShape(n))) device.Convert(source, loaded);
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                device.Convert(source, destination);
            }
            catch (Exception e)
            {
                failure = e;
            }
        });
        thread.Start();
        thread.Join();
        Assert.Null(failure);
        var actual = DeviceData.Download(device, destination);
        for (var i = 0; i < n; i++) Assert.Equal(BFloat16.Round(values[i]), actual[i]);
    }

    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void MisalignedOrMismatchedTensorsAreRejectedBeforeLaunch(DeviceKind kind)
    {
        var device = TestDevices.Get(kind);
        using var source = device.Allocate(DType.Float32, new TensorShape(64));
        using var destination = device.Allocate(DType.BFloat16, new TensorShape(64));
        Assert.Throws<ArgumentException>("source", () => device.Convert(source.Tensor.Slice(1, 32), destination.Tensor.Slice(0, 32)));
        Assert.Throws<ArgumentException>("destination", () => device.Convert(source.Tensor, destination.Tensor.Slice(0, 32)));
        using var ints = device.Allocate(DType.Int32, new TensorShape(64));
        Assert.Throws<ArgumentException>("destination", () => device.Convert(source.Tensor, ints.Tensor));
    }
}
