using System.Numerics;
using Keel.Native.Devices;
using Keel.Native.Numerics;

namespace Keel.Native.Model;

/// <summary>
/// Copies between host spans of float or double and device tensors of Float32 or Float64, converting element by
/// element (round to nearest) when the two types differ. Used for parameters, moments and checkpoints, one tensor at
/// a time, never inside a step.
/// </summary>
internal static class HostCopy
{
    /// <summary>destination = <paramref name="host"/>, converted to the tensor's element type.</summary>
    public static void Upload<T>(IDevice device, ReadOnlySpan<T> host, Tensor destination) where T : unmanaged, INumberBase<T>
    {
        if (DTypes.Of<T>() == destination.DType) device.CopyFromHost(host, destination);
        else if (destination.DType == DType.Float32) device.CopyFromHost<float>(Converted<T, float>(host), destination);
        else if (destination.DType == DType.Float64) device.CopyFromHost<double>(Converted<T, double>(host), destination);
        else throw new ArgumentException($"Host values go to Float32 or Float64 tensors, not {destination.DType}.", nameof(destination));
    }

    /// <summary><paramref name="host"/> = source, converted to <typeparamref name="T"/>.</summary>
    public static void Download<T>(IDevice device, Tensor source, Span<T> host) where T : unmanaged, INumberBase<T>
    {
        if (DTypes.Of<T>() == source.DType)
        {
            device.CopyToHost(source, host);
        }
        else if (source.DType == DType.Float32)
        {
            var values = new float[host.Length];
            device.CopyToHost<float>(source, values);
            Converted<float, T>(values).CopyTo(host);
        }
        else if (source.DType == DType.Float64)
        {
            var values = new double[host.Length];
            device.CopyToHost<double>(source, values);
            Converted<double, T>(values).CopyTo(host);
        }
        else
        {
            throw new ArgumentException($"Host values come from Float32 or Float64 tensors, not {source.DType}.", nameof(source));
        }
    }

    private static TTo[] Converted<TFrom, TTo>(ReadOnlySpan<TFrom> values) where TFrom : INumberBase<TFrom> where TTo : INumberBase<TTo>
    {
        var result = new TTo[values.Length];
        for (var i = 0; i < values.Length; i++) result[i] = TTo.CreateTruncating(values[i]);
        return result;
    }
}
