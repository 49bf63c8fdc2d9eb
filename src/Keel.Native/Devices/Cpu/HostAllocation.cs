using System.Runtime.InteropServices;

namespace Keel.Native.Devices.Cpu;

/// <summary>Host memory for the CPU device: 256-byte aligned, like CUDA's allocations, so views line up the same way.</summary>
internal sealed unsafe class HostAllocation : DeviceAllocation
{
    private HostAllocation(void* pointer, long byteLength) : base((ulong)pointer, byteLength)
    {
    }

    public static HostAllocation Allocate(long byteLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(byteLength);
        // Zero-byte tensors still get a real, unique address.
        var pointer = NativeMemory.AlignedAlloc((nuint)Math.Max(byteLength, 1), 256);
        return new HostAllocation(pointer, byteLength);
    }

    protected override void Release() => NativeMemory.AlignedFree((void*)Address);
}
