using Keel.Native.Training;

namespace Keel.Cli.Plots;

/// <summary>
/// Draws the loss curves of a run (<see cref="Keel.Native.Training.LossHistory"/>) to a PNG with ScottPlot, in the font
/// <see cref="PlotFont"/> finds.
/// </summary>
internal static class LossPlot
{
    /// <summary>The plot's name in a run folder.</summary>
    public const string FileName = "loss.png";

    /// <summary>Writes a <paramref name="width"/>×<paramref name="height"/> PNG of the training and validation losses against the step.</summary>
    public static void Save(string path, string title, LossHistory history, int width = 900, int height = 540)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(history);
        var (train, validation) = (history.Training, history.Validation);
        var plot = PlotFont.NewPlot();
        var finiteTrain = train.Where(p => double.IsFinite(p.Loss)).ToArray();
        if (finiteTrain.Length > 0)
        {
            var line = plot.Add.ScatterLine(finiteTrain.Select(p => (double)p.Step).ToArray(), finiteTrain.Select(p => p.Loss).ToArray());
            line.LegendText = "train loss";
            line.LineWidth = 1;
        }
        if (validation.Count > 0)
        {
            var points = plot.Add.Scatter(validation.Select(p => (double)p.Step).ToArray(), validation.Select(p => p.Loss).ToArray());
            points.LegendText = "validation loss";
            points.LineWidth = 2;
            points.MarkerSize = 7;
        }
        plot.Title(title);
        plot.XLabel("step");
        plot.YLabel("mean token loss (nats)");
        plot.ShowLegend(ScottPlot.Alignment.UpperRight);
        var folder = Path.GetDirectoryName(Path.GetFullPath(path));
        if (folder is not null) Directory.CreateDirectory(folder);
        plot.SavePng(path, width, height);
    }
}
