using Keel.Native.Devices;
using Keel.Native.Devices.Cuda;

namespace Keel.Native.Memory;

/// <summary>
/// The kind of device a plan is for, and what that kind costs beyond the tensors a step names: the fixed allowance for
/// the CUDA context, and the granularity device allocations are rounded to.
/// </summary>
/// <param name="Kind">CPU, CUDA or emulated.</param>
/// <param name="ContextAllowanceBytes">
/// Memory the device uses before anything is allocated and that the plan cannot see op by op: on a GPU the CUDA context,
/// the loaded kernel modules and cuBLAS's own state. A stated allowance, not a measurement.
/// </param>
/// <param name="AllocationGranularity">Each device allocation occupies a multiple of this many bytes (the CUDA driver maps 2 MiB pages).</param>
/// <param name="Multiprocessors">SMs (or emulator workers): some kernels' scratch grows with them.</param>
public sealed record MemoryTarget(DeviceKind Kind, long ContextAllowanceBytes, long AllocationGranularity, int Multiprocessors)
{
    /// <summary>The CUDA context allowance: 512 MiB, about what a CUDA 12 context with lazily loaded modules, cuBLAS and this library's kernels takes on an H100.</summary>
    public const long CudaContextAllowance = 512L << 20;

    /// <summary>SMs assumed when planning for a GPU that is not at hand: 132, an H100 SXM's and an H200's.</summary>
    public const int AssumedMultiprocessors = 132;

    /// <summary>The CPU device: host memory, nothing beyond the tensors.</summary>
    public static MemoryTarget Cpu { get; } = new(DeviceKind.Cpu, 0, 64, 1);

    /// <summary>A GPU not at hand: the context allowance, 2 MiB allocation pages, <see cref="AssumedMultiprocessors"/> SMs.</summary>
    public static MemoryTarget Cuda { get; } = new(DeviceKind.Cuda, CudaContextAllowance, 2L << 20, AssumedMultiprocessors);

    /// <summary>The emulated device: host memory with a guard page after each allocation, one worker per core.</summary>
    public static MemoryTarget Emulated { get; } = new(DeviceKind.Emulated, 0, 4096, Environment.ProcessorCount);

    /// <summary>The target of <paramref name="kind"/> when the device itself is not at hand.</summary>
    public static MemoryTarget For(DeviceKind kind) => kind switch
    {
        DeviceKind.Cpu => Cpu,
        DeviceKind.Cuda => Cuda,
        DeviceKind.Emulated => Emulated,
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown device kind."),
    };

    /// <summary>The target of <paramref name="device"/>, with its own SM (or worker) count when it runs kernels.</summary>
    public static MemoryTarget For(IDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        var target = For(device.Kind);
        return device.Kernels is { } kernels ? target with { Multiprocessors = kernels.MultiprocessorCount } : target;
    }

    /// <summary>Bytes an allocation of <paramref name="bytes"/> occupies on this target.</summary>
    public long Allocated(long bytes) => bytes <= 0 ? 0 : (bytes + AllocationGranularity - 1) / AllocationGranularity * AllocationGranularity;

    /// <summary>True when kernels (not the C# reference) run the ops, so the launchers' scratch exists.</summary>
    public bool RunsKernels => Kind != DeviceKind.Cpu;

    /// <summary>The GEMM workspace: cuBLAS's on a GPU, none elsewhere.</summary>
    public long GemmWorkspaceBytes => Kind == DeviceKind.Cuda ? CudaDevice.CublasWorkspaceBytes : 0;
}
