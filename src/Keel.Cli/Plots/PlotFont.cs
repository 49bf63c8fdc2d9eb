namespace Keel.Cli.Plots;

/// <summary>
/// The font of the CLI's plots. ScottPlot renders through SkiaSharp's self-contained native library, which finds no
/// system fonts by itself, so a TrueType font is registered from the usual folders when one is there; without any,
/// plots are drawn without text.
/// </summary>
internal static class PlotFont
{
    private const string Name = "KeelPlotSans";
    private static readonly Lazy<bool> s_registered = new(Register);

    /// <summary>A new plot, with the registered font when there is one.</summary>
    public static ScottPlot.Plot NewPlot()
    {
        var plot = new ScottPlot.Plot();
        if (s_registered.Value) plot.Font.Set(Name);
        return plot;
    }

    private static bool Register()
    {
        string[] candidates = ["DejaVuSans.ttf", "LiberationSans-Regular.ttf", "NotoSans-Regular.ttf", "FreeSans.ttf", "Arial.ttf"];
        string[] folders = ["/usr/share/fonts", "/usr/local/share/fonts", "/Library/Fonts", "/System/Library/Fonts", Environment.GetFolderPath(Environment.SpecialFolder.Fonts)];
        foreach (var folder in folders.Where(f => f.Length > 0 && Directory.Exists(f)))
        {
            foreach (var file in candidates)
            {
                var path = Directory.EnumerateFiles(folder, file, SearchOption.AllDirectories).FirstOrDefault();
                if (path is null) continue;
                ScottPlot.Fonts.AddFontFile(Name, path);
                return true;
            }
        }
        return false;
    }
}
