using Keel.Native.Training;

namespace Keel.Cli.Plots;

/// <summary>
/// Draws the loss curves of a run (<see cref="Keel.Native.Training.LossHistory"/>) to a PNG with ScottPlot. ScottPlot renders through SkiaSharp's self-contained
/// native library, which finds no system fonts by itself, so a TrueType font is registered from the usual
/// folders when one is there; without any, the curves are drawn without text.
/// </summary>
internal static class LossPlot
{
    /// <summary>The plot's name in a run folder.</summary>
    public const string FileName = "loss.png";

    private const string FontName = "KeelPlotSans";
    private static readonly Lazy<bool> s_font = new(RegisterFont);

    /// <summary>Writes a <paramref name="width"/>×<paramref name="height"/> PNG of the training and validation losses against the step.</summary>
    public static void Save(string path, string title, LossHistory history, int width = 900, int height = 540)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(history);
        var (train, validation) = (history.Training, history.Validation);
        var plot = new ScottPlot.Plot();
        if (s_font.Value) plot.Font.Set(FontName);
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

    private static bool RegisterFont()
    {
        string[] candidates = ["DejaVuSans.ttf", "LiberationSans-Regular.ttf", "NotoSans-Regular.ttf", "FreeSans.ttf", "Arial.ttf"];
        string[] folders = ["/usr/share/fonts", "/usr/local/share/fonts", "/Library/Fonts", "/System/Library/Fonts", Environment.GetFolderPath(Environment.SpecialFolder.Fonts)];
        foreach (var folder in folders.Where(f => f.Length > 0 && Directory.Exists(f)))
        {
            foreach (var name in candidates)
            {
                var file = Directory.EnumerateFiles(folder, name, SearchOption.AllDirectories).FirstOrDefault();
                if (file is null) continue;
                ScottPlot.Fonts.AddFontFile(FontName, file);
                return true;
            }
        }
        return false;
    }
}
