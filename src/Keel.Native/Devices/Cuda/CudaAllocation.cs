using Keel.Cuda.Driver;

namespace Keel.Native.Devices.Cuda;

/// <summary>Device memory of a <see cref="CudaDevice"/>.</summary>
internal sealed class CudaAllocation(DeviceMemory memory) : DeviceAllocation(memory.Address, memory.ByteLength)
{
    protected override void Release() => memory.Dispose();
}
