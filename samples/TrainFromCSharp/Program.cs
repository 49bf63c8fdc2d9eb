using Keel.Native.Devices;
using Keel.Native.Model;
using Keel.Native.Training;

// Train a small Keel Transformer from C# and save a checkpoint: the GPU when there is one, else the CPU.
// Usage: TrainFromCSharp [output folder]   (the checkpoint goes to <folder>/checkpoint)
var folder = args.Length > 0 ? args[0] : "train-from-csharp";

using var device = TrainingDevices.Open(DeviceChoice.Auto, Console.Out);
var text = SyntheticTask.Generate(seed: 1, characters: 100_000);   // lines "word|word": learn to copy the word
var data = TokenDataset.FromText(text, new ByteTokenizer(), validationFraction: 0.1, source: "copy task");

// Keel: x_{l+1} = N(L·x_l + F_l(N(x_l))) over L = 8 sub-layers; the FFN width defaults to 3 × hidden.
var config = new ModelConfig { VocabularySize = data.Tokenizer.VocabularySize, Hidden = 64, Heads = 4, KvHeads = 2, SubLayers = 8, SequenceLength = 64 };
var options = new TrainingOptions { Steps = 40, BatchSize = 8, LearningRate = 3e-3 };   // warm-up: a tenth of the steps

using var trainer = new Trainer(device, config, options, data);
trainer.Initialize();
Console.WriteLine($"{device.Name}: {trainer.Model.Layout.ParameterCount:N0} parameters, alpha {config.ResidualScale}");
var first = trainer.Step();
var last = first;
while (trainer.CompletedSteps < options.Steps)
{
    last = trainer.Step();
    if (last.Step % 10 == 0) Console.WriteLine($"step {last.Step}: loss {last.Loss:0.000}");
}
Console.WriteLine($"validation loss {trainer.EvaluateValidation():0.000}");

var checkpoint = Path.Combine(folder, "checkpoint");
Checkpoints.Save(trainer, checkpoint);
Console.WriteLine($"checkpoint in {checkpoint} (keel sample --checkpoint {checkpoint})");

// The sample doubles as a check that the packages work: the loss must fall and the checkpoint must read back.
var (saved, state) = Checkpoints.ReadConfig(checkpoint);
if (!(last.Loss < first.Loss) || saved != config || state.Step != options.Steps)
{
    Console.Error.WriteLine($"unexpected: loss {first.Loss} -> {last.Loss}, checkpoint at step {state.Step}");
    return 1;
}
return 0;
