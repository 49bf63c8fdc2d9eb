using CommandLine;
using Keel.Cli.Commands;
using Keel.Cli.Commands.Bench;
using Keel.Cli.Commands.Study;
using Keel.Cuda;
using Keel.Distributed.Mpi;
using Keel.Native.Kernels;

namespace Keel.Cli;

/// <summary>The <c>keel</c> command line: parses a verb and runs it, turning expected failures into one clear message.</summary>
public static class KeelCli
{
    /// <summary>Runs <paramref name="args"/>; returns the process exit code (0 success, 1 failure, 2 usage error).</summary>
    public static int Run(string[] args, TextWriter output, TextWriter error)
    {
        using var parser = new Parser(settings =>
        {
            settings.HelpWriter = error;
            settings.CaseInsensitiveEnumValues = true;
            settings.AutoVersion = true;
        });
        var parsed = parser.ParseArguments<TrainOptions, EvalOptions, SampleOptions, PlanOptions, BenchOptions, InfoOptions, CompileOptions, StudyOptions>(args);
        try
        {
            return parsed.MapResult(
                (TrainOptions o) => TrainCommand.Run(o, output, error),
                (EvalOptions o) => EvalCommand.Run(o, output, error),
                (SampleOptions o) => SampleCommand.Run(o, output, error),
                (PlanOptions o) => PlanCommand.Run(o, output),
                (InfoOptions o) => InfoCommand.Run(o, output),
                (CompileOptions o) => CompileCommand.Run(o, output, error),
                (BenchOptions o) => BenchCommand.Run(o, output, error),
                (StudyOptions o) => StudyCommand.Run(o, args, output, error),
                _ => 2);
        }
        catch (Exception e) when (IsExpected(e))
        {
            error.WriteLine($"keel: {Message(e, (parsed as Parsed<object>)?.Value)}");
            return 1;
        }
    }

    /// <summary>A failure the user can act on (bad input, a missing library or file), told in one line rather than with a stack trace.</summary>
    internal static bool IsExpected(Exception e) =>
        e is ArgumentException or DllNotFoundException or CudaException or KernelCompileException or MpiException
            or IOException or UnauthorizedAccessException or InvalidDataException or NotSupportedException;

    /// <summary>
    /// The message of an expected failure as a user should read it: an <see cref="ArgumentException"/> without its
    /// "(Parameter 'x')" and "Actual value was" lines, led by the option to change when its field is one of the verb's.
    /// </summary>
    internal static string Message(Exception e, object? options)
    {
        if (e is not ArgumentException { ParamName: { } name } argument) return e.Message;
        var text = e.Message.Split('\n')[0].Replace($" (Parameter '{name}')", "", StringComparison.Ordinal).TrimEnd();
        if (argument is ArgumentOutOfRangeException { ActualValue: { } actual })
            text = $"{text.TrimEnd('.')} (got {Convert.ToString(actual, System.Globalization.CultureInfo.InvariantCulture)}).";
        return options is not null && OptionNames.Flag(options, name) is { } flag ? $"{flag}: {text}" : text;
    }
}
