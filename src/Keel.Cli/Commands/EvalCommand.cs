using CommandLine;
using Keel.Native.Devices;
using Keel.Native.Model;
using Keel.Native.Training;

namespace Keel.Cli.Commands;

/// <summary>The options of the verbs that read a checkpoint: where it is and the device to run it on.</summary>
internal abstract class CheckpointOptions
{
    [Option("checkpoint", Required = true, HelpText = "A checkpoint folder (or a run folder holding checkpoint/).")]
    public string Checkpoint { get; init; } = "";

    [Option("device", Default = DeviceChoice.Auto, HelpText = "Auto (GPU if present, else CPU), Cpu, Cuda or Emulated.")]
    public DeviceChoice Device { get; init; } = DeviceChoice.Auto;
}

[Verb("eval", HelpText = "Mean token loss and perplexity of a checkpoint over a whole text file, read as consecutive non-overlapping windows of the model's sequence length (a last partial window dropped; each window's positions 1..S-1 are predicted).")]
internal sealed class EvalOptions : CheckpointOptions
{
    [Option("data", Required = true, HelpText = "The UTF-8 text file to evaluate.")]
    public string Data { get; init; } = "";

    [Option("batch", Default = 8, HelpText = "Windows per forward pass (does not change the result).")]
    public int BatchSize { get; init; } = 8;
}

/// <summary><c>keel eval</c>: loss and perplexity of a checkpoint on a file.</summary>
internal static class EvalCommand
{
    public static int Run(EvalOptions options, TextWriter output, TextWriter notices)
    {
        if (options.BatchSize <= 0) throw new ArgumentOutOfRangeException(nameof(options.BatchSize), options.BatchSize, "The batch must be positive.");
        var folder = Checkpoints.Locate(options.Checkpoint);
        var (config, state) = Checkpoints.ReadConfig(folder);
        var tokenizer = TextTokenizers.Create(state.Tokenizer);
        var text = TokenDataset.FromFile(options.Data, tokenizer, 0.5);
        int[] tokens = [.. text.Train, .. text.Validation];
        var windows = Batches.WindowCount(tokens.Length, config.SequenceLength);
        if (windows == 0)
            throw new ArgumentException($"{text.Source} gives {tokens.Length} tokens ({state.Tokenizer}), fewer than one window of the model's sequence length {config.SequenceLength}.", nameof(options.Data));
        using var device = TrainingDevices.Open(options.Device, notices);
        using var model = new KeelModel(device, config, ModelPrecision.For(device), options.BatchSize);
        Checkpoints.LoadWeights(model, folder, state.Step);
        var (loss, counted) = Evaluation.MeanLoss(model, tokens);
        output.WriteLine($"checkpoint  {folder} (step {state.Step})");
        output.WriteLine($"data        {text.Source}: {tokens.Length:N0} tokens ({state.Tokenizer}), {windows:N0} windows of {config.SequenceLength}, {counted:N0} predicted tokens");
        output.WriteLine($"loss        {loss:0.000000} nats/token");
        output.WriteLine($"perplexity  {Math.Exp(loss):0.0000}");
        return 0;
    }
}
