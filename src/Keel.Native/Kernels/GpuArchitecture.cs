using System.Globalization;

namespace Keel.Native.Kernels;

/// <summary>
/// What a GPU architecture allows one block, as the CUDA C Programming Guide's table of compute capabilities gives
/// it. The emulator stands in for one of these (<c>EmulatorOptions.Architecture</c>) and holds launches to its limits;
/// launchers that size tiles by the shared-memory limit have a specialization per distinct limit here in the catalog.
/// </summary>
/// <param name="Name">The architecture, such as <c>sm_86</c>.</param>
/// <param name="SharedMemoryPerBlockOptIn">Shared memory a block may use, static and dynamic together, after the dynamic opt-in.</param>
/// <remarks>The 1024 threads a block may have on all of them is <c>LaunchShape</c>'s own check, made before any launch.</remarks>
public sealed record GpuArchitecture(string Name, int SharedMemoryPerBlockOptIn)
{
    /// <summary>32-bit registers per SM, which is also the most one block may hold, on every architecture here.</summary>
    public const int RegistersPerMultiprocessor = 65536;

    /// <summary>Registers are allocated per warp in units of this many.</summary>
    public const int RegisterAllocationUnit = 256;

    /// <summary>The architectures the project targets: A100 (sm_80), the other Ampere parts (sm_86), Ada (sm_89), Hopper (sm_90).</summary>
    public static IReadOnlyList<GpuArchitecture> All { get; } =
    [
        new("sm_80", 163 * 1024),
        new("sm_86", 99 * 1024),
        new("sm_89", 99 * 1024),
        new("sm_90", 227 * 1024),
    ];

    /// <summary>The architecture named <paramref name="name"/>.</summary>
    /// <exception cref="ArgumentException">The emulator does not know it.</exception>
    public static GpuArchitecture Named(string name) =>
        All.FirstOrDefault(a => a.Name == name)
        ?? throw new ArgumentException($"Architecture '{name}' is not one of the targets; use one of {string.Join(", ", All.Select(a => a.Name))}.", nameof(name));

    /// <summary>
    /// Why a block of <paramref name="threads"/> threads with <paramref name="registers"/> registers each,
    /// <paramref name="staticSharedBytes"/> of static and <paramref name="dynamicSharedBytes"/> of dynamic shared memory
    /// cannot launch on this architecture, or null when it can.
    /// </summary>
    public string? WhyNotLaunchable(int threads, int registers, int staticSharedBytes, int dynamicSharedBytes)
    {
        var shared = (long)staticSharedBytes + dynamicSharedBytes;
        if (shared > SharedMemoryPerBlockOptIn)
            return string.Create(CultureInfo.InvariantCulture,
                $"it needs {shared} bytes of shared memory per block ({staticSharedBytes} static + {dynamicSharedBytes} dynamic), and {Name} allows at most {SharedMemoryPerBlockOptIn} ({SharedMemoryPerBlockOptIn / 1024} KiB) even with the opt-in");
        var warps = (threads + 31) / 32;
        var perWarp = (registers * 32 + RegisterAllocationUnit - 1) / RegisterAllocationUnit * RegisterAllocationUnit;
        if ((long)warps * perWarp > RegistersPerMultiprocessor)
            return string.Create(CultureInfo.InvariantCulture,
                $"{threads} threads of {registers} registers need {warps * perWarp} registers ({perWarp} per warp), and an SM of {Name} has {RegistersPerMultiprocessor} (CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES)");
        return null;
    }

    /// <inheritdoc />
    public override string ToString() => Name;
}
