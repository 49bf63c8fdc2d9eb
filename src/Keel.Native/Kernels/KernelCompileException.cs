using System.Text.RegularExpressions;

namespace Keel.Native.Kernels;

/// <summary>One message of a compiler log, located at a file and line.</summary>
/// <param name="File">The source file, for example <c>kernels/optimizer.cu</c>.</param>
/// <param name="Line">The 1-based line.</param>
/// <param name="Severity"><c>error</c>, <c>warning</c> or <c>remark</c>.</param>
/// <param name="Message">The compiler's text.</param>
public sealed record KernelDiagnostic(string File, int Line, string Severity, string Message)
{
    /// <inheritdoc />
    public override string ToString() => $"{File}:{Line}: {Severity}: {Message}";
}

/// <summary>
/// A kernel failed to compile. <see cref="Exception.Message"/> leads with the first errors as
/// <c>file:line: error: message</c>; <see cref="Log"/> holds the compiler's whole log.
/// </summary>
public sealed partial class KernelCompileException : Exception
{
    /// <summary>Creates the exception for <paramref name="spec"/> compiled for <paramref name="target"/>.</summary>
    public KernelCompileException(KernelSpec spec, string target, string log)
        : this(spec, target, log, ParseDiagnostics(log))
    {
    }

    private KernelCompileException(KernelSpec spec, string target, string log, IReadOnlyList<KernelDiagnostic> diagnostics)
        : base(FormatMessage(spec, target, log, diagnostics))
    {
        Spec = spec;
        Target = target;
        Log = log;
        Diagnostics = diagnostics;
    }

    /// <summary>The specialization that failed.</summary>
    public KernelSpec Spec { get; }

    /// <summary>What it was compiled for: an architecture such as <c>sm_90</c>, or <c>emulation</c>.</summary>
    public string Target { get; }

    /// <summary>The compiler's whole log.</summary>
    public string Log { get; }

    /// <summary>The located messages of <see cref="Log"/>.</summary>
    public IReadOnlyList<KernelDiagnostic> Diagnostics { get; }

    /// <summary>
    /// Parses NVRTC's (<c>file(line): error: text</c>) and g++'s (<c>file:line:col: error: text</c>) log lines.
    /// </summary>
    public static IReadOnlyList<KernelDiagnostic> ParseDiagnostics(string log) =>
        DiagnosticPattern().Matches(log)
            .Select(m => new KernelDiagnostic(m.Groups["file"].Value, int.Parse(m.Groups["line"].Value, System.Globalization.CultureInfo.InvariantCulture),
                                              m.Groups["severity"].Value, m.Groups["message"].Value.Trim()))
            .ToList();

    private static string FormatMessage(KernelSpec spec, string target, string log, IReadOnlyList<KernelDiagnostic> diagnostics)
    {
        var errors = diagnostics.Where(d => d.Severity == "error").Take(5).Select(d => "  " + d).ToList();
        var summary = errors.Count > 0 ? string.Join(Environment.NewLine, errors) : log;
        return $"Kernel {spec} failed to compile for {target}:{Environment.NewLine}{summary}";
    }

    [GeneratedRegex(@"^(?<file>[^\s():]+)(?:\((?<line>\d+)\)|:(?<line>\d+)(?::\d+)?):\s*(?<severity>error|warning|remark)[^:]*:\s*(?<message>.*)$", RegexOptions.Multiline)]
    private static partial Regex DiagnosticPattern();
}
