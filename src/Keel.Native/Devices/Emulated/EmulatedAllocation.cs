namespace Keel.Native.Devices.Emulated;

/// <summary>Emulator "global memory": host memory from <c>keel_emu_alloc</c>, guarded when bounds checking is on.</summary>
internal sealed class EmulatedAllocation(EmulatorLibrary library, IntPtr pointer, long byteLength)
    : DeviceAllocation((ulong)pointer, byteLength)
{
    protected override void Release() => library.Free((IntPtr)Address);
}
