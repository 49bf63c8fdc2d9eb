using System.Runtime.InteropServices;
using System.Text;

namespace Keel.Cuda.Interop;

/// <summary>NUL-terminated UTF-8 copies of managed strings that live until the scope is disposed.</summary>
internal sealed unsafe class Utf8Strings : IDisposable
{
    private readonly List<IntPtr> _allocations = [];

    public byte* Add(string value)
    {
        var count = Encoding.UTF8.GetByteCount(value);
        var p = (byte*)NativeMemory.Alloc((nuint)count + 1);
        _allocations.Add((IntPtr)p);
        Encoding.UTF8.GetBytes(value, new Span<byte>(p, count));
        p[count] = 0;
        return p;
    }

    public void Dispose()
    {
        foreach (var p in _allocations) NativeMemory.Free((void*)p);
        _allocations.Clear();
    }
}
