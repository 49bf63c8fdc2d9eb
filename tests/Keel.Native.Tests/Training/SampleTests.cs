namespace Keel.Native.Tests.Training;

/// <summary>The README's "Train from C#" shows the code CI runs (samples/TrainFromCSharp), not a copy that drifts.</summary>
public sealed class SampleTests
{
    [Fact]
    public void TheReadmeShowsTheSamplesProgramAndPackageReference()
    {
        var root = TrainingFixtures.RepositoryRoot();
        var readme = File.ReadAllText(Path.Combine(root, "README.md")).ReplaceLineEndings("\n");
        var section = readme[readme.IndexOf("## Train from C#", StringComparison.Ordinal)..];
        var code = section[(section.IndexOf("```csharp\n", StringComparison.Ordinal) + "```csharp\n".Length)..];
        code = code[..code.IndexOf("```", StringComparison.Ordinal)];
        Assert.Equal(File.ReadAllText(Path.Combine(root, "samples", "TrainFromCSharp", "Program.cs")).ReplaceLineEndings("\n"), code);

        var project = File.ReadAllText(Path.Combine(root, "samples", "TrainFromCSharp", "TrainFromCSharp.csproj"));
        var reference = section[section.IndexOf("<PackageReference", StringComparison.Ordinal)..];
        Assert.Contains(reference[..(reference.IndexOf("/>", StringComparison.Ordinal) + 2)], project);
    }

    [Fact]
    public void TheSampleReferencesTheVersionThePackIsMadeAt()
    {
        var root = TrainingFixtures.RepositoryRoot();
        var version = System.Xml.Linq.XDocument.Load(Path.Combine(root, "Directory.Build.props")).Descendants("Version").Single().Value;
        var project = System.Xml.Linq.XDocument.Load(Path.Combine(root, "samples", "TrainFromCSharp", "TrainFromCSharp.csproj"));
        var reference = project.Descendants("PackageReference").Single(e => (string?)e.Attribute("Include") == "Keel.Native");
        Assert.Equal(version, (string?)reference.Attribute("Version"));
    }
}
