namespace Keel.Native.Devices.Emulated;

/// <summary>
/// The emulator's checking modes: each makes a class of GPU bug visible on the CPU, at a cost in speed
/// (<c>kernels/emu/README.md</c>, "Checking modes", has what each catches, misses and costs).
/// </summary>
[Flags]
public enum EmulatorChecks
{
    /// <summary>No checks beyond the ones always on (barriers, warp masks, bounds, traps, misaligned vectors).</summary>
    None = 0,

    /// <summary>
    /// A seeded schedule: blocks in a random order (not index order), and within a block the warps in a random order
    /// and each warp's lanes in a random order, at the start and after every barrier. Deterministic kernels must give
    /// bit-identical results under every seed.
    /// </summary>
    Order = 1,

    /// <summary>Shared-memory races (two threads, no barrier or warp sync between them), and any access to a cp.async destination before its wait.</summary>
    Race = 2,

    /// <summary>cp.async destinations hold poison (0xff bytes) from the copy's issue until the wait that retires it.</summary>
    Async = 4,

    /// <summary>
    /// Shared memory poisoned at every block's start; device memory filled with 0xff bytes (NaN) instead of zeros; a
    /// kernel's read of shared or device bytes that nothing wrote is reported.
    /// </summary>
    Init = 8,

    /// <summary>A spin-wait that no running block can end is reported with the kernel, block and line, instead of hanging.</summary>
    Spin = 16,

    /// <summary>
    /// Each launch is held to the limits of <see cref="EmulatorOptions.Architecture"/>: threads, registers and shared
    /// memory of the kernel as NVRTC compiles it for that architecture (needs NVRTC).
    /// </summary>
    Limits = 32,

    /// <summary>Every check.</summary>
    All = Order | Race | Async | Init | Spin | Limits,
}

/// <summary>Reading <see cref="EmulatorChecks"/> from text: <c>race,init,order</c>, <c>all</c> or <c>none</c>.</summary>
public static class EmulatorChecksText
{
    /// <summary>The environment variable that sets the default checks of <see cref="EmulatorOptions"/>.</summary>
    public const string Variable = "KEEL_EMU_CHECKS";

    private static readonly (string Name, EmulatorChecks Value)[] Names =
    [
        ("none", EmulatorChecks.None), ("order", EmulatorChecks.Order), ("race", EmulatorChecks.Race), ("async", EmulatorChecks.Async),
        ("init", EmulatorChecks.Init), ("spin", EmulatorChecks.Spin), ("limits", EmulatorChecks.Limits), ("all", EmulatorChecks.All),
    ];

    /// <summary>Parses a comma-separated list of check names; <paramref name="source"/> names where the text came from, for the error.</summary>
    /// <exception cref="ArgumentException">A name is not a check.</exception>
    public static EmulatorChecks Parse(string text, string source)
    {
        ArgumentNullException.ThrowIfNull(text);
        var checks = EmulatorChecks.None;
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var match = Array.FindIndex(Names, n => string.Equals(n.Name, part, StringComparison.OrdinalIgnoreCase));
            if (match < 0)
                throw new ArgumentException($"{source}: '{part}' is not an emulator check; use a comma-separated list of {string.Join(", ", Names.Select(n => n.Name))}.", source);
            checks |= Names[match].Value;
        }
        return checks;
    }

    /// <summary>The names of the checks in <paramref name="checks"/>, comma-separated (<c>none</c> for none).</summary>
    public static string Format(EmulatorChecks checks) =>
        checks == EmulatorChecks.None ? "none"
        : string.Join(",", Names.Where(n => n.Value != EmulatorChecks.None && n.Value != EmulatorChecks.All && checks.HasFlag(n.Value)).Select(n => n.Name));

    /// <summary>The checks <see cref="Variable"/> names, or none when it is unset or empty.</summary>
    /// <exception cref="ArgumentException">It names something that is not a check.</exception>
    public static EmulatorChecks FromEnvironment() =>
        Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } text ? Parse(text, Variable) : EmulatorChecks.None;
}
