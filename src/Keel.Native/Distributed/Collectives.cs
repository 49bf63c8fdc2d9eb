using Keel.Distributed.Mpi;
using Keel.Native.Devices;
using Keel.Native.Devices.Cuda;
using Keel.Native.Training;

namespace Keel.Native.Distributed;

/// <summary>Opens the <see cref="ICollectives"/> that fits a device.</summary>
public static class Collectives
{
    /// <summary>
    /// NCCL for a GPU (its tensors never leave it; the GPU's stream carries the collectives), MPI for the CPU and emulated
    /// devices, whose memory is host memory. Host values go over <paramref name="world"/> in both cases. Every rank of
    /// <paramref name="world"/> must call it.
    /// </summary>
    public static ICollectives Open(MpiCommunicator world, IDevice device)
    {
        ArgumentNullException.ThrowIfNull(world);
        ArgumentNullException.ThrowIfNull(device);
        var inner = device is ProfiledDevice profiled ? profiled.Inner : device;
        return inner is CudaDevice cuda ? new NcclCollectives(new MpiRankGroup(world), cuda) : new MpiCollectives(world, device);
    }
}
