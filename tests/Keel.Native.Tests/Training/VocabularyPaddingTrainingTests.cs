using Keel.Native.Tests.Cuda;

namespace Keel.Native.Tests.Training;

/// <summary>
/// Training a model whose vocabulary (300) is not a multiple of 64: the embedding table's and LM head's padded rows
/// (300 to 320) get zero gradient, so AdamW (weight decay included) keeps them, its moments and the bf16 operand copy
/// exactly zero, on the CPU device and on the kernel devices.
/// </summary>
[Collection(CudaDeviceCollection.Name)]
public sealed class VocabularyPaddingTrainingTests
{
    public static TheoryData<DeviceKind, bool> Devices => new()
    {
        { DeviceKind.Cpu, true }, { DeviceKind.Cpu, false },
        { DeviceKind.Emulated, true }, { DeviceKind.Emulated, false },
        { DeviceKind.Cuda, false },
    };

    [Theory]
    [MemberData(nameof(Devices))]
    public void PaddedRowsStayExactlyZeroThroughTrainingSteps(DeviceKind kind, bool tied)
    {
        var device = TestDevices.Get(kind);
        var config = TrainingFixtures.TinyConfig with
        {
            VocabularySize = 300, Hidden = 64, Heads = 4, KvHeads = 2, FeedForwardSize = 128, SequenceLength = 32, TiedEmbeddings = tied,
        };
        // A learning rate and weight decay large enough that a padded row with any gradient would move.
        var options = TrainingFixtures.TinyOptions with { Steps = 3, BatchSize = 2, WarmupSteps = 0, LearningRate = 1e-2, WeightDecay = 0.1 };
        using var trainer = new Trainer(device, config, options, TrainingFixtures.CopyTask());
        trainer.Initialize();
        var layout = trainer.Model.Layout;
        var initial = TrainingFixtures.Parameters(trainer.Model);
        for (var step = 0; step < options.Steps; step++)
            Assert.False(trainer.Step().Skipped, $"step {step + 1} was skipped");

        var parameters = TrainingFixtures.Parameters(trainer.Model);
        var gradients = new float[layout.Length];
        trainer.Model.ReadGradients<float>(gradients);
        var first = Download(device, trainer.Optimizer.FirstMoment);
        var second = Download(device, trainer.Optimizer.SecondMoment);
        var operands = trainer.Model.OperandParameters.IsEmpty ? null : Download(device, trainer.Model.OperandParameters);
        foreach (var index in new[] { layout.Embedding, layout.LmHead }.Distinct())
        {
            var t = layout.Tensors[index];
            Assert.Equal(320 - 300, (int)((t.PaddedLength - t.Length) / config.Hidden));
            var (start, length) = ((int)(t.Offset + t.Length), (int)(t.PaddedLength - t.Length));
            AssertZero(parameters, "parameters");
            AssertZero(gradients, "gradients");
            AssertZero(first, "first moments");
            AssertZero(second, "second moments");
            if (operands is not null) AssertZero(operands, "operand copy");
            // The true rows trained.
            Assert.NotEqual(initial.AsSpan((int)t.Offset, (int)t.Length).ToArray(), parameters.AsSpan((int)t.Offset, (int)t.Length).ToArray());

            void AssertZero(float[] flat, string what)
            {
                var padding = flat.AsSpan(start, length);
                var i = padding.IndexOfAnyExcept(0f);
                Assert.True(i < 0, $"{t.Name}'s {what}: padded element {(i < 0 ? 0 : i)} is {(i < 0 ? 0 : padding[i])}, not zero");
            }
        }
    }

    private static float[] Download(IDevice device, Tensor tensor) => DeviceData.Download(device, tensor);
}
