using CommandLine;
using Keel.Native.Devices;
using Keel.Native.Model;
using Keel.Native.Training;

namespace Keel.Cli.Commands;

[Verb("sample", HelpText = "Generate text from a checkpoint.")]
internal sealed class SampleOptions : CheckpointOptions
{
    [Option("prompt", HelpText = "Text to continue. Default: a prompt of the built-in task for models trained on it, else a newline.")]
    public string? Prompt { get; init; }

    [Option("tokens", Default = 200, HelpText = "Tokens to generate.")]
    public int Tokens { get; init; } = 200;

    [Option("temperature", Default = 0.8, HelpText = "Softmax temperature (0: always the most likely token).")]
    public double Temperature { get; init; } = 0.8;

    [Option("top-k", Default = 40, HelpText = "Draw among the k most likely tokens (0: all).")]
    public int TopK { get; init; } = 40;

    [Option("seed", Default = 1UL, HelpText = "Seed of the draws.")]
    public ulong Seed { get; init; } = 1;
}

/// <summary><c>keel sample</c>: text from a checkpoint.</summary>
internal static class SampleCommand
{
    public static int Run(SampleOptions options, TextWriter output, TextWriter notices)
    {
        if (options.Tokens < 0) throw new ArgumentOutOfRangeException(nameof(options.Tokens), options.Tokens, "The number of tokens must not be negative.");
        if (!(options.Temperature >= 0 && double.IsFinite(options.Temperature)))
            throw new ArgumentOutOfRangeException(nameof(options.Temperature), options.Temperature, "The temperature must be finite and not negative.");
        if (options.TopK < 0) throw new ArgumentOutOfRangeException(nameof(options.TopK), options.TopK, "k must not be negative.");
        var folder = Checkpoints.Locate(options.Checkpoint);
        var (config, state) = Checkpoints.ReadConfig(folder);
        using var device = TrainingDevices.Open(options.Device, notices);
        using var model = new KeelModel(device, config, ModelPrecision.For(device), batchSize: 1);
        Checkpoints.LoadWeights(model, folder, state.Step);
        var prompt = options.Prompt ?? (state.DataSource == TrainCommand.SyntheticSource ? SyntheticTask.Prompt : "");
        output.WriteLine(TextSampler.Generate(model, TextTokenizers.Create(state.Tokenizer), prompt, options.Tokens, options.Temperature, options.TopK, options.Seed));
        return 0;
    }
}
