using Keel.Cuda.Nccl;
using Keel.Native.Devices.Cuda;

namespace Keel.Native.Tests.Cuda;

/// <summary>
/// The NCCL path on one GPU as one rank (a communicator of one, no MPI): the bindings move known data where they should, on
/// the device's stream and through the overlap stream, and a trainer whose gradients go through NCCL takes the steps the
/// single-device trainer takes. They skip, saying why, without a GPU or without libnccl.
/// </summary>
[Collection(CudaDeviceCollection.Name)]
public sealed class NcclCollectivesTests
{
    [Fact]
    public void AllReduceReduceScatterAllGatherAndReduceMoveKnownDataOnOneRank()
    {
        var device = OpenOrSkip();
        Assert.True(NcclCommunicator.Version.Major >= 2, $"NCCL {NcclCommunicator.Version}");
        using var nccl = new NcclCollectives(SingleRank.Instance, device);
        Assert.Equal((0, 1), (nccl.Rank, nccl.Size));
        const int N = 4099;
        var known = Enumerable.Range(0, N).Select(i => (float)Math.Sin(i) * 1000).ToArray();
        using var a = device.Allocate(DType.Float32, new TensorShape(N));
        using var b = device.Allocate(DType.Float32, new TensorShape(N));
        device.CopyFromHost<float>(known, a);

        nccl.AllReduceSum(a);
        Assert.Equal(known, Read(device, a));
        device.CopyFromHost<float>(new float[N], b);
        nccl.ReduceScatterSum(a, b);
        Assert.Equal(known, Read(device, b));
        device.CopyFromHost<float>(new float[N], b);
        nccl.AllGather(a, b);
        Assert.Equal(known, Read(device, b));
        device.CopyFromHost<float>(new float[N], b);
        nccl.ReduceSum(a, b, root: 0);
        Assert.Equal(known, Read(device, b));

        // Overlapped: the side stream starts after the upload and the device's stream waits for its fence.
        device.CopyFromHost<float>(known, a);
        nccl.BeginOverlap();
        nccl.AllReduceSum(a);
        var fence = nccl.EndOverlap();
        nccl.Wait(fence);
        device.Copy(a, b);
        nccl.WaitForDevice();
        Assert.Equal(known, Read(device, b));
        using var bf16 = device.Allocate(DType.BFloat16, new TensorShape(8));
        Assert.Equal("buffer", Assert.Throws<ArgumentException>(() => nccl.AllReduceSum(bf16)).ParamName);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(2)]
    public void ATrainStepThroughNcclEqualsTheSingleDeviceStep(int zeroStage)
    {
        var device = OpenOrSkip();
        var options = TrainingFixtures.TinyOptions with { ZeroStage = zeroStage, AccumulationSteps = 2, CudaGraphs = false };
        using var nccl = new NcclCollectives(SingleRank.Instance, device);
        using var alone = new Trainer(device, TrainingFixtures.TinyConfig, options, TrainingFixtures.CopyTask());
        using var ranked = new Trainer(device, TrainingFixtures.TinyConfig, options, TrainingFixtures.CopyTask(), collectives: nccl);
        alone.Initialize();
        ranked.Initialize();
        for (var step = 1; step <= 3; step++)
        {
            var (a, r) = (alone.Step(), ranked.Step());
            Assert.True(Math.Abs(a.Loss - r.Loss) <= 1e-6 * Math.Abs(a.Loss), $"step {step}: loss {r.Loss} through NCCL, {a.Loss} alone");
            Assert.True(Math.Abs(a.GradientNorm - r.GradientNorm) <= 1e-6 * a.GradientNorm, $"step {step}: gradient norm {r.GradientNorm} through NCCL, {a.GradientNorm} alone");
        }
        var (p, q) = (new float[alone.Model.Layout.Length], new float[ranked.Model.Layout.Length]);
        alone.Model.ReadParameters<float>(p);
        ranked.Model.ReadParameters<float>(q);
        for (var i = 0; i < p.Length; i++) Assert.True(Math.Abs(p[i] - q[i]) <= 1e-6f * Math.Max(1f, Math.Abs(p[i])), $"parameter {i}: {q[i]} through NCCL, {p[i]} alone");
    }

    private static CudaDevice OpenOrSkip()
    {
        var device = (CudaDevice)TestDevices.Get(DeviceKind.Cuda);
        if (!CudaLibraries.TryLoad(CudaLibrary.Nccl, out _, out var missing)) Assert.Skip("NCCL is not available: " + missing!.Message);
        return device;
    }

    private static float[] Read(IDevice device, Tensor tensor)
    {
        var host = new float[tensor.Length];
        device.CopyToHost<float>(tensor, host);
        return host;
    }
}
