using System.Diagnostics;
using System.Globalization;
using Keel.Native.Studies;
using Keel.Native.Training;

namespace Keel.Cli.Commands.Study;

/// <summary>
/// The progress of a whole study: a line when a run starts or ends, and a progress line (runs done, steps, tokens/s, ETA)
/// at most every half second on a terminal and every ten seconds otherwise. The ETA weighs each remaining step by its
/// run's depth (L + 2: the sub-layers plus the embedding and the head), so deep runs count for what they cost, and it
/// shrinks when a run stops early at divergence. Runs found finished are not counted in the rate or the ETA.
/// </summary>
internal sealed class StudyProgressPrinter : IStudyProgress
{
    private readonly Lock _lock = new();
    private readonly TextWriter _output;
    private readonly bool _interactive;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly int _runs;
    private long _totalWork, _doneWork, _tokens, _steps, _totalSteps;
    private int _finished;
    private TimeSpan _lastPrint;
    private bool _lineOpen;

    public StudyProgressPrinter(TextWriter output, bool interactive, IReadOnlyList<StudyRun> runs)
    {
        (_output, _interactive, _runs) = (output, interactive, runs.Count);
        foreach (var run in runs)
        {
            _totalWork += Work(run.Config.SubLayers) * run.Options.Steps;
            _totalSteps += run.Options.Steps;
        }
    }

    public void Reused(StudyRunResult result)
    {
        lock (_lock)
        {
            _finished++;
            _totalWork -= Work(result.SubLayers) * result.PlannedSteps;
            _totalSteps -= result.PlannedSteps;
            WriteLine($"{result.Name,-24} finished before: {Outcome(result)}");
        }
    }

    public void Started(StudyRun run)
    {
        lock (_lock) WriteLine($"{run.Name,-24} started");
    }

    public void Stepped(StudyRun run, StepResult step)
    {
        lock (_lock)
        {
            _doneWork += Work(run.Config.SubLayers);
            _tokens += step.Tokens;
            _steps++;
            var now = _clock.Elapsed;
            if (now - _lastPrint < TimeSpan.FromSeconds(_interactive ? 0.5 : 10)) return;
            _lastPrint = now;
            var text = ProgressText(now);
            if (_interactive)
            {
                _output.Write("\r" + text);
                _lineOpen = true;
            }
            else
            {
                _output.WriteLine(text);
            }
        }
    }

    public void Finished(StudyRunResult result)
    {
        lock (_lock)
        {
            _finished++;
            // A run stopped at divergence does not do its remaining steps.
            _totalWork -= Work(result.SubLayers) * (result.PlannedSteps - result.Steps);
            _totalSteps -= result.PlannedSteps - result.Steps;
            WriteLine($"{result.Name,-24} {Outcome(result)}  ({Duration(TimeSpan.FromSeconds(result.Seconds))}, {result.TokensPerSecond:N0} tok/s)  [{ProgressText(_clock.Elapsed)}]");
        }
    }

    /// <summary>Ends an open progress line.</summary>
    public void Close()
    {
        lock (_lock)
        {
            if (_lineOpen) _output.WriteLine();
            _lineOpen = false;
        }
    }

    private static long Work(int subLayers) => subLayers + 2;

    private string ProgressText(TimeSpan elapsed)
    {
        var rate = _tokens / Math.Max(elapsed.TotalSeconds, 1e-9);
        var eta = _doneWork == 0 ? "?" : Duration(TimeSpan.FromSeconds((_totalWork - _doneWork) * elapsed.TotalSeconds / _doneWork));
        return string.Create(CultureInfo.InvariantCulture,
            $"study {_finished}/{_runs} runs, step {_steps}/{_totalSteps} ({100.0 * _doneWork / Math.Max(_totalWork, 1):0}%), {rate:0} tok/s, ETA {eta}");
    }

    private void WriteLine(string text)
    {
        _output.WriteLine((_lineOpen ? "\r" : "") + text.PadRight(_lineOpen ? 100 : 0));
        _lineOpen = false;
    }

    internal static string Outcome(StudyRunResult result) => result.Diverged
        ? string.Create(CultureInfo.InvariantCulture, $"diverged at step {result.DivergedAtStep} (lr {result.DivergenceLearningRate:0.00e+0}, {result.DivergenceReason})")
        : string.Create(CultureInfo.InvariantCulture, $"ran {result.Steps} steps, final train {result.FinalTrainLoss:0.0000}, validation {result.ValidationLoss:0.0000}");

    /// <summary>m:ss, or h:mm:ss from an hour on.</summary>
    internal static string Duration(TimeSpan time) =>
        time.TotalHours >= 1 ? string.Create(CultureInfo.InvariantCulture, $"{(int)time.TotalHours}:{time:mm\\:ss}") : time.ToString("m\\:ss", CultureInfo.InvariantCulture);
}
