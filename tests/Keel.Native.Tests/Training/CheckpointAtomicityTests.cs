namespace Keel.Native.Tests.Training;

/// <summary>A checkpoint is replaced as a whole: a save stopped at any point leaves a complete checkpoint to resume from.</summary>
public sealed class CheckpointAtomicityTests
{
    [Fact]
    public void ASaveThatFailsPartWayLeavesThePreviousCheckpointIntact()
    {
        using var run = new RunSavedAtStepOne();

        // The weights of step 2 are written, then the copy of the optimizer state fails.
        run.Device.CopiesLeft = run.Trainer.Model.Layout.Tensors.Count + 3;
        Assert.Throws<IOException>(() => Checkpoints.Save(run.Trainer, run.Checkpoint));
        run.Device.CopiesLeft = int.MaxValue;
        Assert.True(File.Exists(Path.Combine(run.Checkpoint + Checkpoints.PartialSuffix, Checkpoints.ModelFile)));

        Assert.Equal(run.Checkpoint, Checkpoints.Locate(run.Folder.Path));
        run.AssertResumesAtStepOne();
        run.AssertTheNextSaveReplacesEverything();
    }

    [Fact]
    public void ASaveStoppedBetweenItsTwoRenamesResumesFromTheOlderCheckpoint()
    {
        using var run = new RunSavedAtStepOne();

        // As a save leaves things when stopped after renaming the old checkpoint aside and before renaming the new one in.
        var checkpoint = run.Checkpoint;
        Directory.Move(checkpoint, checkpoint + Checkpoints.PreviousSuffix);
        Directory.CreateDirectory(checkpoint + Checkpoints.PartialSuffix);
        File.WriteAllText(Path.Combine(checkpoint + Checkpoints.PartialSuffix, Checkpoints.ModelFile), "cut short");

        Assert.Equal(checkpoint + Checkpoints.PreviousSuffix, Checkpoints.Locate(run.Folder.Path));
        Assert.Equal(checkpoint + Checkpoints.PreviousSuffix, Checkpoints.Locate(checkpoint));
        run.AssertResumesAtStepOne();
        run.AssertTheNextSaveReplacesEverything();
    }

    /// <summary>A run checkpointed after step 1 in a fresh run folder, then trained one more step.</summary>
    private sealed class RunSavedAtStepOne : IDisposable
    {
        private readonly TokenDataset _data = TrainingFixtures.CopyTask();
        private readonly float[] _saved;

        public RunSavedAtStepOne()
        {
            Checkpoint = Path.Combine(Folder.Path, TrainingLoop.CheckpointFolder);
            Trainer = new Trainer(Device, TrainingFixtures.TinyConfig, TrainingFixtures.TinyOptions, _data);
            Trainer.Initialize();
            Trainer.Step();
            Checkpoints.Save(Trainer, Checkpoint);
            _saved = TrainingFixtures.Parameters(Trainer.Model);
            Trainer.Step();
        }

        public TempFolder Folder { get; } = new();
        public FailingCopiesDevice Device { get; } = new();
        public Trainer Trainer { get; }
        public string Checkpoint { get; }

        public void AssertResumesAtStepOne()
        {
            using var resumed = Checkpoints.Resume(Checkpoint, Device, _data);
            Assert.Equal(1, resumed.CompletedSteps);
            Assert.Equal(_saved, TrainingFixtures.Parameters(resumed.Model));
        }

        public void AssertTheNextSaveReplacesEverything()
        {
            Checkpoints.Save(Trainer, Checkpoint);
            Assert.Equal(2, Checkpoints.ReadConfig(Checkpoint).State.Step);
            Assert.Equal([Checkpoint], Directory.GetDirectories(Folder.Path));
        }

        public void Dispose()
        {
            Trainer.Dispose();
            Device.Dispose();
            Folder.Dispose();
        }
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
