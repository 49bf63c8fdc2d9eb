using Keel.Distributed.Mpi;
using Keel.Native.Devices;

namespace Keel.Native.Distributed;

/// <summary>Opens the <see cref="ICollectives"/> that fits a device.</summary>
public static class Collectives
{
    /// <summary>
    /// NCCL for a device with a CUDA stream (a GPU: its tensors never leave it, and its stream carries the collectives), MPI
    /// for the CPU and emulated devices, whose memory is host memory. Host values go over <paramref name="world"/> in both
    /// cases. Every rank of <paramref name="world"/> must call it.
    /// </summary>
    public static ICollectives Open(MpiCommunicator world, IDevice device)
    {
        ArgumentNullException.ThrowIfNull(world);
        ArgumentNullException.ThrowIfNull(device);
        return device.NativeStream is not null ? new NcclCollectives(new MpiRankGroup(world), device) : new MpiCollectives(world, device);
    }
}
