using System.Globalization;
using Keel.Native.Studies;

namespace Keel.Cli.Plots;

/// <summary>
/// The plot of a study, a PNG in its folder: <c>lr-range.png</c> (training loss against the learning rate, one line
/// per run, divergence marked with a cross, on the top edge when the loss there is off the plot), <c>lr-sweep.png</c> (validation loss against the peak learning rate per
/// architecture) or <c>depth.png</c> (validation loss against depth per architecture). Learning rates and depths are on
/// log axes; a diverged run of a sweep or a depth study is a cross on the top edge. The loss axis spans the finite
/// losses up to the highest starting loss, so a divergence's explosion does not flatten the rest.
/// </summary>
internal static class StudyPlots
{
    /// <summary>Writes the study's plot into <paramref name="folder"/> and returns its path.</summary>
    public static string Save(string folder, StudyKind kind, IReadOnlyList<StudyRunResult> results, string subtitle, int width = 1000, int height = 600)
    {
        var plot = PlotFont.NewPlot();
        var (name, title) = kind switch
        {
            StudyKind.LrRange => ("lr-range.png", "learning-rate range test"),
            StudyKind.LrSweep => ("lr-sweep.png", "learning-rate sweep"),
            _ => ("depth.png", "validation loss against depth"),
        };
        var (low, high) = LossRange(kind, results);
        if (kind == StudyKind.LrRange) RangeCurves(plot, results, high);
        else FinalLosses(plot, kind, results, high);
        plot.Title($"keel study: {title} ({subtitle})");
        plot.YLabel(kind == StudyKind.LrRange ? "training loss (nats)" : "validation loss (nats)");
        plot.XLabel(kind == StudyKind.Depth ? "sub-layers L" : kind == StudyKind.LrRange ? "learning rate" : "peak learning rate");
        if (double.IsFinite(low) && double.IsFinite(high)) plot.Axes.SetLimitsY(low, high);
        plot.ShowLegend(ScottPlot.Alignment.UpperLeft);
        var path = Path.Combine(folder, name);
        plot.SavePng(path, width, height);
        return path;
    }

    private static void RangeCurves(ScottPlot.Plot plot, IReadOnlyList<StudyRunResult> results, double top)
    {
        var decades = new List<double>();
        for (var i = 0; i < results.Count; i++)
        {
            var result = results[i];
            var points = result.Curve.Where(p => double.IsFinite(p.Loss) && p.LearningRate > 0).ToArray();
            if (points.Length == 0) continue;
            var color = plot.Add.Palette.GetColor(i);
            var line = plot.Add.ScatterLine(points.Select(p => Math.Log10(p.LearningRate)).ToArray(), points.Select(p => p.Loss).ToArray(), color);
            line.LegendText = Label(result);
            line.LineWidth = 1;
            decades.AddRange(points.Select(p => Math.Log10(p.LearningRate)));
            if (result.DivergenceLearningRate is { } lr && points.FirstOrDefault(p => p.Step >= result.DivergedAtStep) is { LearningRate: > 0 } at)
                plot.Add.Marker(Math.Log10(lr), Math.Min(double.IsFinite(at.Loss) ? at.Loss : points[^1].Loss, top), ScottPlot.MarkerShape.Cross, 14, color);
        }
        LogTicks(plot, decades);
    }

    private static void FinalLosses(ScottPlot.Plot plot, StudyKind kind, IReadOnlyList<StudyRunResult> results, double top)
    {
        var xs = new List<double>();
        var series = kind == StudyKind.Depth
            ? results.GroupBy(r => (r.Architecture, Other: r.PeakLearningRate)).Select(g => (Label: $"{Arch(g.Key.Architecture)} lr {StudyRun.FormatRate(g.Key.Other)}", Runs: g.ToList()))
            : results.GroupBy(r => (r.Architecture, Other: (double)r.SubLayers)).Select(g => (Label: $"{Arch(g.Key.Architecture)} L={g.Key.Other}", Runs: g.ToList()));
        var index = 0;
        foreach (var (label, runs) in series)
        {
            var color = plot.Add.Palette.GetColor(index++);
            double X(StudyRunResult r) => kind == StudyKind.Depth ? Math.Log2(r.SubLayers) : Math.Log10(r.PeakLearningRate);
            var good = runs.Where(r => !r.Diverged && r.ValidationLoss is not null).OrderBy(X).ToArray();
            xs.AddRange(runs.Select(X));
            if (good.Length > 0)
            {
                var line = plot.Add.Scatter(good.Select(X).ToArray(), good.Select(r => r.ValidationLoss!.Value).ToArray(), color);
                line.LegendText = label;
                line.LineWidth = 2;
                line.MarkerSize = 8;
            }
            foreach (var diverged in runs.Where(r => r.Diverged))
                plot.Add.Marker(X(diverged), double.IsFinite(top) ? top : 0, ScottPlot.MarkerShape.Cross, 14, color);
        }
        // Ticks at the depths or rates the study ran.
        if (kind == StudyKind.Depth) PowerTicks(plot, xs, 2, v => v.ToString("0", CultureInfo.InvariantCulture));
        else PowerTicks(plot, xs, 10, StudyRun.FormatRate);
    }

    /// <summary>From the lowest finite loss to the highest first-step loss (or highest final loss), with a margin.</summary>
    private static (double Low, double High) LossRange(StudyKind kind, IReadOnlyList<StudyRunResult> results)
    {
        var values = kind == StudyKind.LrRange
            ? results.SelectMany(r => r.Curve).Select(p => p.Loss).Where(double.IsFinite).ToList()
            : results.Select(r => r.ValidationLoss).OfType<double>().ToList();
        if (values.Count == 0) return (double.NaN, double.NaN);
        var low = values.Min();
        var high = kind == StudyKind.LrRange
            ? results.Select(r => r.Curve.FirstOrDefault(p => double.IsFinite(p.Loss)).Loss).Where(l => l > 0).DefaultIfEmpty(values.Max()).Max()
            : values.Max();
        var pad = Math.Max(0.05, 0.08 * (high - low));
        return (low - pad, high + pad);
    }

    /// <summary>Ticks at the powers of ten (and 2 and 5 times them when the range is under two decades) of a log10 axis.</summary>
    private static void LogTicks(ScottPlot.Plot plot, List<double> positions)
    {
        if (positions.Count == 0) return;
        double min = positions.Min(), max = positions.Max();
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        var fine = max - min < 2;
        for (var decade = (int)Math.Floor(min); decade <= (int)Math.Ceiling(max); decade++)
        {
            foreach (var factor in fine ? new[] { 1.0, 2.0, 5.0 } : [1.0])
            {
                var at = decade + Math.Log10(factor);
                if (at >= min - 0.3 && at <= max + 0.3) ticks.AddMajor(at, (factor * Math.Pow(10, decade)).ToString("0.#e+0", CultureInfo.InvariantCulture).Replace("e+", "e", StringComparison.Ordinal));
            }
        }
        plot.Axes.Bottom.TickGenerator = ticks;
    }

    /// <summary>Ticks at the given positions on a log axis of base <paramref name="logBase"/>, labelled with their values.</summary>
    private static void PowerTicks(ScottPlot.Plot plot, List<double> positions, double logBase, Func<double, string> format)
    {
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        foreach (var at in positions.Distinct()) ticks.AddMajor(at, format(Math.Round(Math.Pow(logBase, at), 12)));
        plot.Axes.Bottom.TickGenerator = ticks;
        if (positions.Count > 0) plot.Axes.SetLimitsX(positions.Min() - 0.3, positions.Max() + 0.3);
    }

    private static string Label(StudyRunResult result) =>
        $"{Arch(result.Architecture)} L={result.SubLayers}" + (result.DivergenceLearningRate is { } lr ? $", diverged at {lr.ToString("0.00e+0", CultureInfo.InvariantCulture)}" : "");

    private static string Arch(Native.Model.Architecture architecture) => architecture.ToString().ToLowerInvariant();
}
