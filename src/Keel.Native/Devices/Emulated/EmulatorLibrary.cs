using System.Runtime.InteropServices;
using System.Text;

namespace Keel.Native.Devices.Emulated;

/// <summary>
/// The C ABI of <c>libkeel_emu.so</c> (<c>kernels/emu/keel_emu_api.h</c>), bound through function pointers
/// because the library is built at run time and its path known only then.
/// </summary>
internal sealed unsafe class EmulatorLibrary
{
    private readonly delegate* unmanaged<nuint, uint, void*> _alloc;
    private readonly delegate* unmanaged<void*, nuint, void> _markWritten;
    private readonly delegate* unmanaged<void*, void> _free;
    private readonly delegate* unmanaged<byte*, IntPtr, void**, Dim3, Dim3, nuint, Options*, byte*, nuint, int> _launch;
    private readonly delegate* unmanaged<int, byte*> _statusName;

    public EmulatorLibrary(string path)
    {
        var handle = NativeLibrary.Load(path);
        _alloc = (delegate* unmanaged<nuint, uint, void*>)NativeLibrary.GetExport(handle, "keel_emu_alloc_flags");
        _markWritten = (delegate* unmanaged<void*, nuint, void>)NativeLibrary.GetExport(handle, "keel_emu_mark_written");
        _free = (delegate* unmanaged<void*, void>)NativeLibrary.GetExport(handle, "keel_emu_free");
        _launch = (delegate* unmanaged<byte*, IntPtr, void**, Dim3, Dim3, nuint, Options*, byte*, nuint, int>)NativeLibrary.GetExport(handle, "keel_emu_launch");
        _statusName = (delegate* unmanaged<int, byte*>)NativeLibrary.GetExport(handle, "keel_emu_status_name");
    }

    /// <summary><c>keel_emu_dim3</c>.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public readonly record struct Dim3(uint X, uint Y, uint Z);

    /// <summary><c>keel_emu_options</c> (40 bytes).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct Options
    {
        public uint Size;
        public int WorkerThreads;
        public int BoundsChecking;
        public uint Reserved;
        public ulong FiberStackBytes;
        public uint Checks;
        public uint Reserved2;
        public ulong Seed;
    }

    /// <summary><c>keel_emu_alloc_flag</c>.</summary>
    [Flags]
    public enum AllocationFlags : uint
    {
        None = 0,
        Guarded = 1,
        Poison = 2,
        TrackInit = 4,
    }

    public IntPtr Allocate(long bytes, AllocationFlags flags)
    {
        var pointer = _alloc((nuint)bytes, (uint)flags);
        return pointer != null ? (IntPtr)pointer : throw new OutOfMemoryException($"The emulator could not allocate {bytes} bytes.");
    }

    /// <summary>Records a host write to emulator memory (copies, fills, the reference GEMM), for the init check.</summary>
    public void MarkWritten(ulong address, long bytes) => _markWritten((void*)address, (nuint)bytes);

    public void Free(IntPtr pointer) => _free((void*)pointer);

    /// <summary>Runs a kernel; returns null on success, else the status name and the runtime's message.</summary>
    public string? Launch(byte* kernelName, IntPtr entry, void** args, Dim3 grid, Dim3 block, int sharedBytes, in Options options)
    {
        const int Capacity = 4096;
        var error = stackalloc byte[Capacity];
        var copy = options;
        var status = _launch(kernelName, entry, args, grid, block, (nuint)sharedBytes, &copy, error, Capacity);
        if (status == 0) return null;
        var name = Marshal.PtrToStringUTF8((IntPtr)_statusName(status)) ?? status.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return $"{name}: {Marshal.PtrToStringUTF8((IntPtr)error)}";
    }

    /// <summary>A NUL-terminated UTF-8 copy of <paramref name="text"/> that lives as long as the process.</summary>
    public static byte* PermanentString(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text + "\0");
        var pointer = (byte*)NativeMemory.Alloc((nuint)bytes.Length);
        bytes.CopyTo(new Span<byte>(pointer, bytes.Length));
        return pointer;
    }
}
