namespace Keel.Cli.Commands.Bench;

/// <summary>One <c>keel bench</c> target: a set of GPU measurements with, where one exists, a PyTorch baseline.</summary>
internal interface IBenchmarkSuite
{
    /// <summary>The target name on the command line (<c>norm</c>, <c>attention</c>, ...).</summary>
    string Name { get; }

    /// <summary>One line for <c>keel bench --help</c>.</summary>
    string Description { get; }

    /// <summary>The baseline script under <c>perf/baselines/</c>, or null when there is none.</summary>
    string? BaselineScript { get; }

    /// <summary>Measures every case (shapes from <see cref="BenchContext.Shapes"/> or the suite's defaults) into <paramref name="report"/>.</summary>
    void Run(BenchContext context, BenchReport report);
}
