using System.Text.RegularExpressions;

namespace Keel.Native.Kernels;

/// <summary>
/// One specialization of a kernel file: the file and the <c>-D</c> macros it is compiled with
/// (for example <c>residual_norm.cu</c> with <c>NORM_KIND=1</c>). Two specs with the same file and the same
/// defines in any order are equal and share one compiled module.
/// </summary>
public sealed partial class KernelSpec : IEquatable<KernelSpec>
{
    /// <summary>Creates a specialization of <paramref name="file"/>.</summary>
    /// <exception cref="ArgumentException">A define's name is not a C identifier or its value has white space.</exception>
    public KernelSpec(string file, params IEnumerable<KeyValuePair<string, string>> defines)
    {
        ArgumentException.ThrowIfNullOrEmpty(file);
        File = file;
        var sorted = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, value) in defines)
        {
            if (!IdentifierPattern().IsMatch(name))
                throw new ArgumentException($"Define name '{name}' is not a C identifier.", nameof(defines));
            if (value.Any(char.IsWhiteSpace))
                throw new ArgumentException($"Define {name} has white space in its value '{value}'.", nameof(defines));
            if (!sorted.TryAdd(name, value))
                throw new ArgumentException($"Define {name} is given twice.", nameof(defines));
        }
        Defines = sorted.ToList();
        Key = Defines.Count == 0 ? File : File + ":" + string.Join(",", Defines.Select(d => $"{d.Key}={d.Value}"));
    }

    /// <summary>The kernel file, for example <c>optimizer.cu</c>.</summary>
    public string File { get; }

    /// <summary>The macros, sorted by name.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Defines { get; }

    /// <summary>A canonical text form, <c>file:NAME=value,...</c>, used for equality, cache keys and tables.</summary>
    public string Key { get; }

    /// <summary>The <c>-D</c> options for the compiler, in canonical order.</summary>
    public IEnumerable<string> DefineOptions => Defines.Select(d => $"-D{d.Key}={d.Value}");

    /// <inheritdoc />
    public bool Equals(KernelSpec? other) => other is not null && Key == other.Key;

    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as KernelSpec);

    /// <inheritdoc />
    public override int GetHashCode() => StringComparer.Ordinal.GetHashCode(Key);

    /// <inheritdoc />
    public override string ToString() => Key;

    [GeneratedRegex("^[A-Za-z_][A-Za-z0-9_]*$")]
    private static partial Regex IdentifierPattern();
}
