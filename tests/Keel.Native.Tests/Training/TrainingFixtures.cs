namespace Keel.Native.Tests.Training;

/// <summary>Small configs, data and helpers shared by the training tests.</summary>
internal static class TrainingFixtures
{
    /// <summary>A byte-level model small enough to train for a few steps in well under a second.</summary>
    public static ModelConfig TinyConfig => new()
    {
        VocabularySize = 256,
        Hidden = 16,
        Heads = 2,
        KvHeads = 1,
        FeedForwardSize = 32,
        SubLayers = 4,
        SequenceLength = 16,
    };

    public static TrainingOptions TinyOptions => new()
    {
        Steps = 8,
        BatchSize = 4,
        WarmupSteps = 2,
        EvalInterval = 0,
        EvalBatches = 2,
        Seed = 42,
    };

    public static TokenDataset CopyTask(ulong seed = 3) =>
        TokenDataset.FromText(SyntheticTask.Generate(seed, 20_000), new ByteTokenizer(), 0.1, "copy task");

    /// <summary>
    /// The repository root (the folder holding Keel.Native.sln), found upwards from the test binaries or, when
    /// they were built outside the repository (a custom ArtifactsPath), from this source file's compile-time path.
    /// </summary>
    public static string RepositoryRoot([System.Runtime.CompilerServices.CallerFilePath] string sourceFile = "")
    {
        foreach (var start in new[] { AppContext.BaseDirectory, Path.GetDirectoryName(sourceFile) ?? "" })
            for (var folder = new DirectoryInfo(start); folder is not null; folder = folder.Parent)
                if (File.Exists(Path.Combine(folder.FullName, "Keel.Native.sln"))) return folder.FullName;
        throw new InvalidOperationException($"No Keel.Native.sln above {AppContext.BaseDirectory} or {sourceFile}.");
    }

    /// <summary>
    /// tinyshakespeare from the folder KEEL_TEST_DATA names, else from shared/data/ beside the repository or beside
    /// one of the folders above it (checkouts live at different depths), or a skip saying where it was looked for.
    /// </summary>
    public static string TinyShakespeareOrSkip()
    {
        const string File = "tinyshakespeare.txt";
        var candidates = new List<string>();
        if (Environment.GetEnvironmentVariable("KEEL_TEST_DATA") is { Length: > 0 } custom) candidates.Add(Path.Combine(custom, File));
        for (var folder = new DirectoryInfo(RepositoryRoot()).Parent; folder is not null; folder = folder.Parent)
            candidates.Add(Path.Combine(folder.FullName, "shared", "data", File));
        var found = candidates.FirstOrDefault(System.IO.File.Exists);
        if (found is null) Assert.Skip($"{File} was not found; looked at {string.Join(", ", candidates)} (KEEL_TEST_DATA names its folder)");
        return found!;
    }

    public static float[] Parameters(KeelModel model)
    {
        var values = new float[model.Layout.Length];
        model.ReadParameters<float>(values);
        return values;
    }
}
