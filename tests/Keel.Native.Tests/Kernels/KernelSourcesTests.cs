namespace Keel.Native.Tests.Kernels;

public class KernelSourcesTests
{
    [Fact]
    public void EmbedsEveryKernelFileAndTheCommonHeader()
    {
        Assert.Contains("cast.cu", KernelSources.Files);
        Assert.Contains("optimizer.cu", KernelSources.Files);
        Assert.True(KernelSources.Headers.ContainsKey("common.cuh"));
    }

    [Fact]
    public void EntryPointsFollowTheNamingConventionOfTheirFile()
    {
        foreach (var file in KernelSources.Files)
        {
            var entries = KernelSources.EntryPoints(file);
            Assert.NotEmpty(entries);
            var family = Path.GetFileNameWithoutExtension(file);
            Assert.All(entries, e => Assert.StartsWith($"keel_{family}_", e));
        }
    }

    [Fact]
    public void EveryCatalogSpecNamesAnEmbeddedFile() =>
        Assert.All(KernelCatalog.All, spec => Assert.Contains(spec.File, KernelSources.Files));

    [Fact]
    public void UnknownFileIsAnArgumentError()
    {
        var error = Assert.Throws<ArgumentException>(() => KernelSources.Read("nope.cu"));
        Assert.Contains("optimizer.cu", error.Message);
    }

    [Fact]
    public void SpecsWithTheSameDefinesInAnyOrderAreEqual()
    {
        var a = new KernelSpec("cast.cu", [new("B", "2"), new("A", "1")]);
        var b = new KernelSpec("cast.cu", [new("A", "1"), new("B", "2")]);
        Assert.Equal(a, b);
        Assert.Equal("cast.cu:A=1,B=2", a.Key);
        Assert.Equal(["-DA=1", "-DB=2"], a.DefineOptions);
    }

    [Theory]
    [InlineData("1A", "1")]
    [InlineData("A B", "1")]
    [InlineData("A", "1 2")]
    public void MalformedDefinesAreRejected(string name, string value) =>
        Assert.Throws<ArgumentException>("defines", () => new KernelSpec("cast.cu", [new(name, value)]));
}
