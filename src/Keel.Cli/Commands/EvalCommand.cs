using CommandLine;
using Keel.Native.Model;
using Keel.Native.Training;

namespace Keel.Cli.Commands;

[Verb("eval", HelpText = "Mean token loss and perplexity of a checkpoint over a whole text file, read as consecutive non-overlapping windows of the model's sequence length (a last partial window dropped; each window's positions 1..S-1 are predicted).")]
internal sealed class EvalOptions
{
    [Option("checkpoint", Required = true, HelpText = "A checkpoint folder (or a run folder holding checkpoint/).")]
    public string Checkpoint { get; init; } = "";

    [Option("data", Required = true, HelpText = "The UTF-8 text file to evaluate.")]
    public string Data { get; init; } = "";

    [Option("batch", Default = 8, HelpText = "Windows per forward pass (does not change the result).")]
    public int BatchSize { get; init; } = 8;

    [Option("device", Default = DeviceChoice.Auto, HelpText = "Auto, Cpu, Cuda or Emulated.")]
    public DeviceChoice Device { get; init; } = DeviceChoice.Auto;
}

/// <summary><c>keel eval</c>: loss and perplexity of a checkpoint on a file.</summary>
internal static class EvalCommand
{
    public static int Run(EvalOptions options, TextWriter output, TextWriter notices)
    {
        var folder = CheckpointFolder.Resolve(options.Checkpoint);
        var (config, state) = Checkpoints.ReadConfig(folder);
        var tokenizer = TextTokenizers.Create(state.Tokenizer);
        var text = TokenDataset.FromFile(options.Data, tokenizer, 0.5);
        int[] tokens = [.. text.Train, .. text.Validation];
        using var device = TrainingDevices.Open(options.Device, notices);
        using var model = new KeelModel(device, config, ModelPrecision.For(device), options.BatchSize);
        Checkpoints.LoadWeights(model, folder, state.Step);
        var (loss, counted) = Evaluation.MeanLoss(model, tokens);
        output.WriteLine($"checkpoint  {folder} (step {state.Step})");
        output.WriteLine($"data        {text.Source}: {tokens.Length:N0} tokens ({state.Tokenizer}), {tokens.Length / config.SequenceLength:N0} windows of {config.SequenceLength}, {counted:N0} predicted tokens");
        output.WriteLine($"loss        {loss:0.000000} nats/token");
        output.WriteLine($"perplexity  {Math.Exp(loss):0.0000}");
        return 0;
    }
}

/// <summary>Accepts a checkpoint folder or the run folder that holds one.</summary>
internal static class CheckpointFolder
{
    public static string Resolve(string path)
    {
        var full = Path.GetFullPath(path);
        var nested = Path.Combine(full, TrainingLoop.CheckpointFolder);
        return Directory.Exists(nested) ? nested : full;
    }
}
