using Keel.Native.Kernels.Launchers;

namespace Keel.Native.Tests.Devices;

/// <summary>
/// Every emulated launch is checked against the parameters the compiler saw (the signature each kernel object exports):
/// a launcher that passes too few arguments, an int for an i64, a pointer for a scalar or a float for an int is refused
/// before anything runs, with a message that names the argument. The launchers' own launches pass the same check in
/// every emulated kernel test.
/// </summary>
public class LaunchArgumentTests
{
    [Fact]
    public void MismatchedLaunchesAreRefusedNamingTheArgumentAndNothingRuns()
    {
        var device = (EmulatedDevice)TestDevices.Get(DeviceKind.Emulated);
        // keel_cast_f32_to_bf16(const float* in, bf16* out, i64 n)
        var cast = device.Runtime.Load(CastKernels.Spec, "keel_cast_f32_to_bf16");
        const int n = 64;
        using var source = DeviceData.Upload(device, DeviceData.Random(new Random(1), n), DType.Float32, new TensorShape(n));
        using var destination = DeviceData.Poisoned(device, DType.BFloat16, new TensorShape(n));
        var shape = new LaunchShape(new Dim3(1), new Dim3(32));

        var narrow = Assert.Throws<KernelLaunchException>(() => cast.Launch(shape, [source.Tensor, destination.Tensor, n]));
        Assert.Contains("keel_cast_f32_to_bf16", narrow.Message);
        Assert.Contains("argument 2 (4-byte signed integer) does not match the kernel's parameter 2 (8-byte signed integer)", narrow.Message);
        Assert.Contains("8-byte pointer, 8-byte pointer, 8-byte signed integer", narrow.Message);

        var missing = Assert.Throws<KernelLaunchException>(() => cast.Launch(shape, [source.Tensor, destination.Tensor]));
        Assert.Contains("passes 2 arguments and the kernel takes 3 parameters", missing.Message);

        var extra = Assert.Throws<KernelLaunchException>(() => cast.Launch(shape, [source.Tensor, destination.Tensor, (long)n, 1f]));
        Assert.Contains("passes 4 arguments and the kernel takes 3 parameters", extra.Message);

        // Same size, wrong kind: an address where the kernel takes a count.
        var pointer = Assert.Throws<KernelLaunchException>(() =>
            cast.Launch(shape, [source.Tensor, destination.Tensor, KernelArgument.Pointer(source.Tensor.Address)]));
        Assert.Contains("argument 2 (8-byte pointer) does not match the kernel's parameter 2 (8-byte signed integer)", pointer.Message);

        // A scalar where the kernel takes a pointer.
        var scalar = Assert.Throws<KernelLaunchException>(() => cast.Launch(shape, [(long)source.Tensor.Address, destination.Tensor, (long)n]));
        Assert.Contains("argument 0 (8-byte signed integer) does not match the kernel's parameter 0 (8-byte pointer)", scalar.Message);

        // None of them ran: the output still holds its poison. The right arguments run.
        Assert.All(DeviceData.Download(device, destination), value => Assert.True(float.IsNaN(value)));
        cast.Launch(shape, [source.Tensor, destination.Tensor, (long)n]);
        Assert.All(DeviceData.Download(device, destination), value => Assert.False(float.IsNaN(value)));
    }

    [Fact]
    public void AFloatWhereTheKernelTakesAnIntIsRefused()
    {
        var device = (EmulatedDevice)TestDevices.Get(DeviceKind.Emulated);
        // keel_fault_none(float* out, int n)
        var kernel = ((EmulatedKernelRuntime)device.Runtime).LoadSource(
            Path.Combine(AppContext.BaseDirectory, "Devices", "emulator_faults.cu"), "keel_fault_none");
        using var buffer = device.Allocate(DType.Float32, new TensorShape(32));
        var error = Assert.Throws<KernelLaunchException>(() => kernel.Launch(new LaunchShape(new Dim3(1), new Dim3(32)), [buffer.Tensor, 32f]));
        Assert.Contains("argument 1 (4-byte floating-point value) does not match the kernel's parameter 1 (4-byte signed integer)", error.Message);
    }

    [Fact]
    public void ArgumentsHoldTheirValuesAsTheKernelReadsThem()
    {
        // The launch hands the kernel a pointer to each argument; the kernel reads its low Size bytes.
        var cases = new (KernelArgument Argument, byte[] Bytes, KernelParameterKind Kind)[]
        {
            (-2, BitConverter.GetBytes(-2), KernelParameterKind.SignedInteger),
            (-3L, BitConverter.GetBytes(-3L), KernelParameterKind.SignedInteger),
            (1.5f, BitConverter.GetBytes(1.5f), KernelParameterKind.Float),
            (KernelArgument.Pointer(0x1234_5678_9abc), BitConverter.GetBytes(0x1234_5678_9abcUL), KernelParameterKind.Pointer),
            (new Tensor(0x40, DType.Float32, new TensorShape(4)), BitConverter.GetBytes(0x40UL), KernelParameterKind.Pointer),
            (default(Tensor), BitConverter.GetBytes(0UL), KernelParameterKind.Pointer),
        };
        foreach (var (argument, bytes, kind) in cases)
        {
            Assert.Equal(kind, argument.Kind);
            Assert.Equal(bytes.Length, argument.Size);
            var held = System.Runtime.InteropServices.MemoryMarshal.AsBytes(new ReadOnlySpan<KernelArgument>(in argument));
            Assert.Equal(bytes, held[..argument.Size].ToArray());
        }
    }
}
