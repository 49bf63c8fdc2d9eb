using System.Buffers;
using System.Numerics;
using Keel.Native.Numerics;

namespace Keel.Native.Devices.Cpu;

/// <summary>
/// Host spans of tensors in one compute type <typeparamref name="T"/> for the CPU device. A tensor already of
/// that type is used in place; any other is converted through a pooled array, and outputs are converted back
/// on <see cref="Commit"/>. This is what lets the CPU device take any mix of fp32, bf16 and fp64 tensors while
/// the reference ops see one type.
/// </summary>
internal sealed class HostStaging<T> : IDisposable where T : unmanaged, IFloatingPointIeee754<T>
{
    // Made on first use: most ops on the CPU device take tensors of their compute type and stage nothing.
    private List<T[]>? _rented;
    private List<(Tensor Target, T[] Staged)>? _writeBacks;

    /// <summary>An input: read-only elements of <paramref name="tensor"/> (empty for an empty tensor).</summary>
    public ReadOnlySpan<T> In(Tensor tensor, [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(tensor))] string? name = null) =>
        tensor.IsEmpty ? default : tensor.DType == DTypes.Of<T>() ? HostMemory.Span<T>(tensor, name) : Convert(tensor, name);

    /// <summary>An output: written by the op, converted back into <paramref name="tensor"/> on <see cref="Commit"/>.</summary>
    public Span<T> Out(Tensor tensor, [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(tensor))] string? name = null)
    {
        if (tensor.IsEmpty) return default;
        if (tensor.DType == DTypes.Of<T>()) return HostMemory.Span<T>(tensor, name);
        var staged = Rent(tensor, name);
        (_writeBacks ??= []).Add((tensor, staged));
        return staged.AsSpan(0, (int)tensor.Length);
    }

    /// <summary>An output that starts from the tensor's current contents (accumulated gradients, updated state).</summary>
    public Span<T> InOut(Tensor tensor, [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(tensor))] string? name = null)
    {
        if (tensor.IsEmpty || tensor.DType == DTypes.Of<T>()) return Out(tensor, name);
        var staged = Convert(tensor, name);
        (_writeBacks ??= []).Add((tensor, _rented![^1]));
        return staged;
    }

    /// <summary>A scratch span of <paramref name="length"/> elements, returned to the pool on dispose.</summary>
    public Span<T> Scratch(int length)
    {
        var array = ArrayPool<T>.Shared.Rent(length);
        (_rented ??= []).Add(array);
        return array.AsSpan(0, length);
    }

    /// <summary>Converts every staged output back into its tensor.</summary>
    public void Commit()
    {
        if (_writeBacks is null) return;
        foreach (var (target, staged) in _writeBacks) Store(staged.AsSpan(0, (int)target.Length), target);
        _writeBacks.Clear();
    }

    public void Dispose()
    {
        if (_rented is null) return;
        foreach (var array in _rented) ArrayPool<T>.Shared.Return(array);
        _rented.Clear();
    }

    private T[] Rent(Tensor tensor, string? name)
    {
        if (tensor.Length > int.MaxValue)
            throw new ArgumentException($"{name} has {tensor.Length} elements; the CPU device handles at most {int.MaxValue} per tensor.", name);
        var array = ArrayPool<T>.Shared.Rent((int)tensor.Length);
        (_rented ??= []).Add(array);
        return array;
    }

    private Span<T> Convert(Tensor tensor, string? name)
    {
        var span = Rent(tensor, name).AsSpan(0, (int)tensor.Length);
        switch (tensor.DType)
        {
            case DType.Float32:
                var f = HostMemory.Span<float>(tensor, name);
                for (var i = 0; i < span.Length; i++) span[i] = T.CreateTruncating(f[i]);
                break;
            case DType.BFloat16:
                var b = HostMemory.Span<BFloat16>(tensor, name);
                for (var i = 0; i < span.Length; i++) span[i] = T.CreateTruncating(b[i].ToSingle());
                break;
            case DType.Float64:
                var d = HostMemory.Span<double>(tensor, name);
                for (var i = 0; i < span.Length; i++) span[i] = T.CreateTruncating(d[i]);
                break;
            default:
                throw new ArgumentException($"{name} is {tensor.DType}; a floating-point tensor is expected.", name);
        }
        return span;
    }

    private static void Store(ReadOnlySpan<T> values, Tensor tensor)
    {
        switch (tensor.DType)
        {
            case DType.Float32:
                var f = HostMemory.Span<float>(tensor);
                for (var i = 0; i < values.Length; i++) f[i] = float.CreateTruncating(values[i]);
                break;
            case DType.BFloat16:
                var b = HostMemory.Span<BFloat16>(tensor);
                for (var i = 0; i < values.Length; i++) b[i] = BFloat16.FromSingle(float.CreateTruncating(values[i]));
                break;
            case DType.Float64:
                var d = HostMemory.Span<double>(tensor);
                for (var i = 0; i < values.Length; i++) d[i] = double.CreateTruncating(values[i]);
                break;
            default:
                throw new ArgumentException($"{tensor} is not a floating-point tensor.", nameof(tensor));
        }
    }
}
