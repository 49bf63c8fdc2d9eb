using Keel.Native.Kernels;
using System.Globalization;

namespace Keel.Native.Devices.Emulated;

/// <summary>How the emulator runs kernels.</summary>
/// <param name="BoundsChecking">
/// Catch out-of-bounds accesses: device memory ends at a guard page, kernels are compiled with array bounds
/// checks, dynamic shared memory is guarded. On by default: the emulator exists to find bugs.
/// </param>
/// <param name="WorkerThreads">OS threads that run blocks; 0 means one per core.</param>
/// <param name="FiberStackBytes">Stack of each emulated CUDA thread; 0 means the runtime's default (64 KiB).</param>
public sealed record EmulatorOptions(bool BoundsChecking = true, int WorkerThreads = 0, long FiberStackBytes = 0)
{
    /// <summary>The environment variable that sets the default <see cref="Seed"/>.</summary>
    public const string SeedVariable = "KEEL_EMU_SEED";

    /// <summary>OS threads that run blocks; 0 means one per core.</summary>
    public int WorkerThreads { get; init => field = NotNegative(value, nameof(WorkerThreads)); } = NotNegative(WorkerThreads, nameof(WorkerThreads));

    /// <summary>Stack of each emulated CUDA thread; 0 means the runtime's default.</summary>
    public long FiberStackBytes { get; init => field = NotNegative(value, nameof(FiberStackBytes)); } = NotNegative(FiberStackBytes, nameof(FiberStackBytes));

    /// <summary>
    /// The checking modes (<see cref="EmulatorChecks"/>); by default those named by <c>KEEL_EMU_CHECKS</c>
    /// (<c>race,init,order,...</c> or <c>all</c>), else none.
    /// </summary>
    /// <exception cref="ArgumentException"><c>KEEL_EMU_CHECKS</c> names something that is not a check.</exception>
    public EmulatorChecks Checks { get; init => field = Known(value); } = EmulatorChecksText.FromEnvironment();

    /// <summary>
    /// The schedule under <see cref="EmulatorChecks.Order"/>: each launch's order follows from this seed, the kernel and the launch
    /// shape, so a run repeats exactly with the same seed. Default: <c>KEEL_EMU_SEED</c>, else 1.
    /// </summary>
    /// <exception cref="ArgumentException"><c>KEEL_EMU_SEED</c> is not an unsigned 64-bit integer.</exception>
    public ulong Seed { get; init; } = SeedFromEnvironment();

    /// <summary>
    /// The GPU the emulator stands in for (<see cref="GpuArchitecture.All"/>): its shared-memory opt-in limit is what
    /// launchers size tiles by and what launches are held to, and under <see cref="EmulatorChecks.Limits"/> its registers and
    /// threads too. Default <c>sm_90</c>.
    /// </summary>
    /// <exception cref="ArgumentException">Not an architecture the emulator knows.</exception>
    public string Architecture { get; init => field = GpuArchitecture.Named(value).Name; } = "sm_90";

    private static T NotNegative<T>(T value, string name) where T : System.Numerics.INumber<T> =>
        T.IsNegative(value) ? throw new ArgumentOutOfRangeException(name, value, $"{name} must not be negative.") : value;

    private static EmulatorChecks Known(EmulatorChecks checks) =>
        (checks & ~EmulatorChecks.All) == 0 ? checks : throw new ArgumentOutOfRangeException(nameof(Checks), checks, "Checks has bits that are not emulator checks.");

    private static ulong SeedFromEnvironment()
    {
        var text = Environment.GetEnvironmentVariable(SeedVariable);
        if (string.IsNullOrEmpty(text)) return 1;
        return ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var seed)
            ? seed
            : throw new ArgumentException($"{SeedVariable}: '{text}' is not an unsigned 64-bit integer.", SeedVariable);
    }
}
