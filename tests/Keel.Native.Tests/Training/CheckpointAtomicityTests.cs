using Keel.Native.Devices;
using Keel.Native.Tests.Support;
using Keel.Native.Training;

namespace Keel.Native.Tests.Training;

/// <summary>A checkpoint is replaced as a whole: a save stopped at any point leaves a complete checkpoint to resume from.</summary>
public sealed class CheckpointAtomicityTests
{
    [Fact]
    public void A_save_that_fails_part_way_leaves_the_previous_checkpoint_intact()
    {
        using var folder = new TempFolder();
        var checkpoint = Path.Combine(folder.Path, TrainingLoop.CheckpointFolder);
        var data = TrainingFixtures.CopyTask();
        using var device = new FailingCopiesDevice();
        using var trainer = new Trainer(device, TrainingFixtures.TinyConfig, TrainingFixtures.TinyOptions, data, TokenizerKind.Byte);
        trainer.Initialize();
        trainer.Step();
        Checkpoints.Save(trainer, checkpoint);
        var saved = TrainingFixtures.Parameters(trainer.Model);
        trainer.Step();

        // The weights of step 2 are written, then the copy of the optimizer state fails.
        device.CopiesLeft = trainer.Model.Layout.Tensors.Count + 3;
        Assert.Throws<IOException>(() => Checkpoints.Save(trainer, checkpoint));
        device.CopiesLeft = int.MaxValue;
        Assert.True(File.Exists(Path.Combine(checkpoint + Checkpoints.PartialSuffix, Checkpoints.ModelFile)));

        Assert.Equal(checkpoint, Checkpoints.Locate(folder.Path));
        using (var resumed = Checkpoints.Resume(checkpoint, device, data))
        {
            Assert.Equal(1, resumed.CompletedSteps);
            Assert.Equal(saved, TrainingFixtures.Parameters(resumed.Model));
        }

        Checkpoints.Save(trainer, checkpoint);
        Assert.Equal(2, Checkpoints.ReadConfig(checkpoint).State.Step);
        Assert.Equal([checkpoint], Directory.GetDirectories(folder.Path));
    }

    [Fact]
    public void A_save_stopped_between_its_two_renames_resumes_from_the_older_checkpoint()
    {
        using var folder = new TempFolder();
        var checkpoint = Path.Combine(folder.Path, TrainingLoop.CheckpointFolder);
        var data = TrainingFixtures.CopyTask();
        using var device = new FailingCopiesDevice();
        using var trainer = new Trainer(device, TrainingFixtures.TinyConfig, TrainingFixtures.TinyOptions, data, TokenizerKind.Byte);
        trainer.Initialize();
        trainer.Step();
        Checkpoints.Save(trainer, checkpoint);
        var saved = TrainingFixtures.Parameters(trainer.Model);
        trainer.Step();

        // As a save leaves things when stopped after renaming the old checkpoint aside and before renaming the new one in.
        Directory.Move(checkpoint, checkpoint + Checkpoints.PreviousSuffix);
        Directory.CreateDirectory(checkpoint + Checkpoints.PartialSuffix);
        File.WriteAllText(Path.Combine(checkpoint + Checkpoints.PartialSuffix, Checkpoints.ModelFile), "cut short");

        Assert.Equal(checkpoint + Checkpoints.PreviousSuffix, Checkpoints.Locate(folder.Path));
        Assert.Equal(checkpoint + Checkpoints.PreviousSuffix, Checkpoints.Locate(checkpoint));
        using (var resumed = Checkpoints.Resume(checkpoint, device, data))
        {
            Assert.Equal(1, resumed.CompletedSteps);
            Assert.Equal(saved, TrainingFixtures.Parameters(resumed.Model));
        }

        Checkpoints.Save(trainer, checkpoint);
        Assert.Equal(2, Checkpoints.ReadConfig(checkpoint).State.Step);
        Assert.Equal([checkpoint], Directory.GetDirectories(folder.Path));
    }

    /// <summary>The CPU device, except that copies to the host fail once <see cref="CopiesLeft"/> runs out.</summary>
    private sealed class FailingCopiesDevice : ForwardingDevice
    {
        public int CopiesLeft { get; set; } = int.MaxValue;

        public override void CopyToHost<T>(Tensor source, Span<T> destination)
        {
            if (CopiesLeft-- <= 0) throw new IOException("the copy failed (planted)");
            base.CopyToHost(source, destination);
        }
    }
}
