using System.Globalization;

namespace Keel.Native.Memory;

/// <summary>Byte counts as people write them: <c>80GiB</c>, <c>141GB</c>, <c>512MiB</c>, <c>1.5TB</c>, <c>1000000</c>.</summary>
public static class ByteSize
{
    private static readonly (string Suffix, double Factor)[] Units =
    [
        ("KIB", 1L << 10), ("MIB", 1L << 20), ("GIB", 1L << 30), ("TIB", 1L << 40),
        ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12),
        ("K", 1L << 10), ("M", 1L << 20), ("G", 1L << 30), ("T", 1L << 40),
        ("B", 1),
    ];

    /// <summary>
    /// Reads a size: a non-negative number with an optional unit, case-insensitive, spaces allowed. KB, MB, GB, TB are
    /// powers of 1000; KiB, MiB, GiB, TiB (and the bare K, M, G, T) powers of 1024; B or no unit is bytes.
    /// </summary>
    /// <exception cref="ArgumentException">Not a size.</exception>
    public static long Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var s = text.Trim().ToUpperInvariant().Replace(" ", "", StringComparison.Ordinal);
        double factor = 1;
        foreach (var (suffix, f) in Units)
        {
            if (!s.EndsWith(suffix, StringComparison.Ordinal)) continue;
            s = s[..^suffix.Length];
            factor = f;
            break;
        }
        if (!double.TryParse(s, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var value) || !(value * factor < long.MaxValue))
            throw new ArgumentException($"'{text}' is not a size; write it like 80GiB, 141GB, 512MiB or a number of bytes.", nameof(text));
        return (long)Math.Round(value * factor);
    }

    /// <summary>Writes <paramref name="bytes"/> in decimal units (B, kB, MB, GB, TB) with three significant figures or more.</summary>
    public static string Format(long bytes)
    {
        var value = (double)bytes;
        string[] units = ["B", "kB", "MB", "GB", "TB"];
        var unit = 0;
        while (Math.Abs(value) >= 1000 && unit < units.Length - 1)
        {
            value /= 1000;
            unit++;
        }
        return unit == 0 ? $"{bytes} B" : string.Create(CultureInfo.InvariantCulture, $"{value:0.00} {units[unit]}");
    }

    /// <summary>Writes <paramref name="bytes"/> in GiB with two decimals.</summary>
    public static string FormatGiB(long bytes) => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):0.00} GiB");
}
