using System.Reflection;
using CommandLine;

namespace Keel.Cli;

/// <summary>
/// The command-line spelling of the options of a verb, found from its <see cref="OptionAttribute"/>s: errors from the
/// library name the config or options field (<c>SubLayers</c>), and the options classes name their properties as those
/// fields are named, so a message can say which option to change (<c>--layers</c>).
/// </summary>
internal static class OptionNames
{
    /// <summary>The option flag (<c>--layers</c>) of the property <paramref name="property"/> of <paramref name="options"/>, matched without regard to case; null when none.</summary>
    public static string? Flag(object options, string property) =>
        Options(options).FirstOrDefault(o => string.Equals(o.Property.Name, property, StringComparison.OrdinalIgnoreCase)).Flag;

    /// <summary>The flags of the options given on the command line: those whose value is not null and not false.</summary>
    public static IEnumerable<(string Property, string Flag)> Given(object options) =>
        Options(options).Where(o => o.Property.GetValue(options) is not (null or false)).Select(o => (o.Property.Name, o.Flag));

    private static IEnumerable<(PropertyInfo Property, string Flag)> Options(object options) =>
        from property in options.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance)
        let option = property.GetCustomAttribute<OptionAttribute>()
        where option is not null
        select (property, "--" + option.LongName);
}
