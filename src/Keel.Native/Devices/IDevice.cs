using Keel.Native.Numerics;

namespace Keel.Native.Devices;

/// <summary>
/// A place tensors live and ops run. One op set, three implementations (<see cref="DeviceKind"/>): the
/// C# reference on the CPU, CUDA kernels on a GPU, and the same kernels run by the CPU emulator. Ops are
/// asynchronous on GPU devices (ordered on the device's stream); reading results back synchronizes.
/// Shapes and element types are validated before anything runs: a bad argument throws
/// <see cref="ArgumentException"/> naming it.
/// </summary>
public interface IDevice : IDisposable
{
    /// <summary>Which implementation this is.</summary>
    DeviceKind Kind { get; }

    /// <summary>A description for logs, such as <c>cuda:0 NVIDIA H100 80GB HBM3 (sm_90)</c>.</summary>
    string Name { get; }

    /// <summary>Allocates an uninitialized tensor (256-byte aligned).</summary>
    DeviceBuffer Allocate(DType dtype, TensorShape shape);

    /// <summary>Copies host memory to the device.</summary>
    void CopyFromHost<T>(ReadOnlySpan<T> source, Tensor destination) where T : unmanaged;

    /// <summary>Copies device memory to the host, waiting for the work that produces it.</summary>
    void CopyToHost<T>(Tensor source, Span<T> destination) where T : unmanaged;

    /// <summary>Copies within the device.</summary>
    void Copy(Tensor source, Tensor destination);

    /// <summary>Sets every byte of <paramref name="destination"/> to zero.</summary>
    void Clear(Tensor destination);

    /// <summary>Waits until all work issued so far has finished.</summary>
    void Synchronize();
}
