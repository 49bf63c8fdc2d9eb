using System.Buffers.Binary;

namespace Keel.Native.Tests.Training;

/// <summary>The checkpoint files as another program reads them: safetensors with Llama names and [out, in] shapes, and JSON beside them.</summary>
public sealed class CheckpointFormatTests
{
    [Fact]
    public void WeightsAreSafetensorsWithLlamaNamesRowMajorOutInShapesAndTheMasterValues()
    {
        using var device = new CpuDevice();
        using var folder = new TempFolder();
        var config = TrainingFixtures.TinyConfig with { TiedEmbeddings = false, FeedForwardSize = 24 };
        using var trainer = new Trainer(device, config, TrainingFixtures.TinyOptions, TrainingFixtures.CopyTask());
        trainer.Initialize();
        trainer.Step();
        Checkpoints.Save(trainer, folder.Path);

        var bytes = File.ReadAllBytes(Path.Combine(folder.Path, Checkpoints.ModelFile));
        var headerLength = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0, headerLength % 8);
        var header = JsonNode.Parse(bytes.AsSpan(8, headerLength))!.AsObject();
        Assert.Equal("1", header["__metadata__"]!["step"]!.GetValue<string>());
        int[] Shape(string name) => header[name]!["shape"]!.AsArray().Select(n => n!.GetValue<int>()).ToArray();
        Assert.Equal([256, 16], Shape("model.embed_tokens.weight"));
        Assert.Equal([16, 16], Shape("model.layers.0.self_attn.q_proj.weight"));
        Assert.Equal([8, 16], Shape("model.layers.0.self_attn.k_proj.weight"));
        Assert.Equal([16, 16], Shape("model.layers.1.self_attn.o_proj.weight"));
        Assert.Equal([24, 16], Shape("model.layers.1.mlp.gate_proj.weight"));
        Assert.Equal([16, 24], Shape("model.layers.1.mlp.down_proj.weight"));
        Assert.Equal([256, 16], Shape("lm_head.weight"));
        Assert.Equal([16], Shape("model.layers.0.input_layernorm.weight"));
        Assert.Equal([16], Shape("model.layers.0.post_attention_layernorm.weight"));
        Assert.Equal([16], Shape("model.layers.0.mlp_output_norm.weight"));
        Assert.Null(header["model.layers.0.attention_output_norm.weight"]);   // Keel's first attention sub-layer has no outer norm.
        Assert.Equal("F32", header["lm_head.weight"]!["dtype"]!.GetValue<string>());

        // The down projection's bytes are the model's row-major [out, in] values.
        var layout = trainer.Model.Layout;
        var flat = TrainingFixtures.Parameters(trainer.Model);
        var down = layout.Tensors[layout.DownProjections[1]];
        var offsets = header[down.Name]!["data_offsets"]!.AsArray().Select(n => n!.GetValue<int>()).ToArray();
        var stored = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes.AsSpan(8 + headerLength + offsets[0], offsets[1] - offsets[0])).ToArray();
        Assert.Equal(flat.AsSpan((int)down.Offset, (int)down.Length).ToArray(), stored);

        var configJson = JsonNode.Parse(File.ReadAllText(Path.Combine(folder.Path, Checkpoints.ConfigFile)))!;
        Assert.Equal("keel", configJson["architecture"]!.GetValue<string>());
        Assert.Equal(ModelConfig.FromJson(File.ReadAllText(Path.Combine(folder.Path, Checkpoints.ConfigFile))), config);
        using var optimizer = SafeTensorsFile.Open(Path.Combine(folder.Path, Checkpoints.OptimizerFile));
        Assert.Equal(DType.Float32, optimizer.Tensors["exp_avg_sq.lm_head.weight"].DType);
        Assert.Equal(2 * layout.Tensors.Count, optimizer.Tensors.Count);
    }

    [Fact]
    public void AnOddVocabularyIsSavedWithItsTrueRowsAndResumesExactly()
    {
        // Vocabulary 300, held as 320 rows in the buffers: the files hold [300, 16] weights and moments, and a resumed run
        // continues bit for bit, its padded rows zero.
        using var device = new CpuDevice();
        using var folder = new TempFolder();
        var config = TrainingFixtures.TinyConfig with { VocabularySize = 300, TiedEmbeddings = false };
        var options = TrainingFixtures.TinyOptions with { Steps = 4 };
        var data = TrainingFixtures.CopyTask();
        double[] uninterrupted;
        float[] finalParameters;
        using (var trainer = new Trainer(device, config, options, data))
        {
            trainer.Initialize();
            uninterrupted = [.. Enumerable.Range(0, options.Steps).Select(_ => trainer.Step().Loss)];
            finalParameters = TrainingFixtures.Parameters(trainer.Model);
        }

        var losses = new List<double>();
        float[][] saved;
        using (var first = new Trainer(device, config, options, data))
        {
            first.Initialize();
            for (var i = 0; i < 2; i++) losses.Add(first.Step().Loss);
            Checkpoints.Save(first, folder.Path);
            saved = State(first);
        }
        using (var model = SafeTensorsFile.Open(Path.Combine(folder.Path, Checkpoints.ModelFile)))
        {
            Assert.Equal([300L, 16], model.Tensors["model.embed_tokens.weight"].Shape);
            Assert.Equal([300L, 16], model.Tensors["lm_head.weight"].Shape);
        }
        using (var optimizer = SafeTensorsFile.Open(Path.Combine(folder.Path, Checkpoints.OptimizerFile)))
        {
            foreach (var moment in new[] { "exp_avg.", "exp_avg_sq." })
            {
                Assert.Equal([300L, 16], optimizer.Tensors[moment + "model.embed_tokens.weight"].Shape);
                Assert.Equal([300L, 16], optimizer.Tensors[moment + "lm_head.weight"].Shape);
            }
        }
        using (var second = Checkpoints.Resume(folder.Path, device, data))
        {
            // Parameters, moments and the padding between and after tensors all come back as they were.
            var restored = State(second);
            for (var i = 0; i < saved.Length; i++) Assert.Equal(saved[i], restored[i]);
            while (second.CompletedSteps < options.Steps) losses.Add(second.Step().Loss);
            Assert.Equal(finalParameters, TrainingFixtures.Parameters(second.Model));
        }
        Assert.Equal(uninterrupted, losses);

        static float[][] State(Trainer trainer) =>
            [TrainingFixtures.Parameters(trainer.Model), DeviceData.Download(trainer.Model.Device, trainer.Optimizer.FirstMoment),
             DeviceData.Download(trainer.Model.Device, trainer.Optimizer.SecondMoment)];
    }

    [Fact]
    public void WeightsWrittenFromAnUnpaddedLayoutLoadIntoTheTrueRowsWithZeroPadding()
    {
        // A model.safetensors written tensor by tensor from values laid end to end without padding, as checkpoints from
        // before the padding (or another program) hold them, loads into a model whose buffer held NaN: each tensor lands in
        // its true rows and every padded element is zero again.
        using var device = new CpuDevice();
        using var folder = new TempFolder();
        var config = TrainingFixtures.TinyConfig with { VocabularySize = 300, TiedEmbeddings = false };
        using var model = new KeelModel(device, config, ModelPrecision.Float32, batchSize: 1);
        var layout = model.Layout;
        var rng = new Random(8);
        var values = layout.Tensors.Select(t => DeviceData.Random(rng, t.Length)).ToArray();
        SafeTensors.Write(Path.Combine(folder.Path, Checkpoints.ModelFile),
                          [.. layout.Tensors.Select(t => (t.Name, DType.Float32, Enumerable.Range(0, t.Shape.Rank).Select(d => t.Shape[d]).ToArray()))],
                          new Dictionary<string, string> { ["step"] = "5" },
                          (i, stream) => stream.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values[i].AsSpan())));
        device.CopyFromHost<float>(Enumerable.Repeat(float.NaN, (int)layout.Length).ToArray(), model.Parameters);

        Checkpoints.LoadWeights(model, folder.Path, step: 5);
        var flat = TrainingFixtures.Parameters(model);
        var covered = new bool[flat.Length];
        for (var i = 0; i < layout.Tensors.Count; i++)
        {
            var t = layout.Tensors[i];
            Assert.Equal(values[i], flat.AsSpan((int)t.Offset, (int)t.Length).ToArray());
            covered.AsSpan((int)t.Offset, (int)t.Length).Fill(true);
        }
        for (var i = 0; i < flat.Length; i++)
            if (!covered[i]) Assert.Equal(0f, flat[i]);
    }

    [Fact]
    public void WeightsWithPaddedRowsAreRefusedNamingTheShapeTheConfigNeeds()
    {
        // The files hold the true vocabulary: a [320, 16] table under a config of vocabulary 300 (padded rows written out,
        // or another model) is reported before anything is allocated, not cut to size.
        using var device = new CpuDevice();
        using var folder = new TempFolder();
        var config = TrainingFixtures.TinyConfig with { VocabularySize = 320 };
        using (var trainer = new Trainer(device, config, TrainingFixtures.TinyOptions, TrainingFixtures.CopyTask()))
        {
            trainer.Initialize();
            Checkpoints.Save(trainer, folder.Path);
        }
        File.WriteAllText(Path.Combine(folder.Path, Checkpoints.ConfigFile), (config with { VocabularySize = 300 }).ToJson());
        var e = Assert.Throws<InvalidDataException>(() => Checkpoints.ReadConfig(folder.Path));
        Assert.Contains("model.embed_tokens.weight has shape [320, 16]; the config needs [300, 16]", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TensorDataFollowsTheSpacePaddedHeaderBackToBackAndFillsTheFile()
    {
        using var device = new CpuDevice();
        using var folder = new TempFolder();
        using var trainer = new Trainer(device, TrainingFixtures.TinyConfig with { Norm = Keel.Native.Reference.NormKind.Layer }, TrainingFixtures.TinyOptions, TrainingFixtures.CopyTask());
        trainer.Initialize();
        Checkpoints.Save(trainer, folder.Path);
        foreach (var file in new[] { Checkpoints.ModelFile, Checkpoints.OptimizerFile })
        {
            var bytes = File.ReadAllBytes(Path.Combine(folder.Path, file));
            var headerLength = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
            var text = System.Text.Encoding.UTF8.GetString(bytes, 8, headerLength);
            var json = text.TrimEnd(' ');
            Assert.True(json.EndsWith('}') && text.Length - json.Length < 8, "the header is JSON padded with fewer than 8 spaces");
            var ranges = JsonNode.Parse(json)!.AsObject().Where(p => p.Key != "__metadata__")
                .Select(p => p.Value!["data_offsets"]!.AsArray().Select(n => n!.GetValue<long>()).ToArray()).OrderBy(r => r[0]).ToList();
            Assert.Equal(0, ranges[0][0]);
            for (var i = 1; i < ranges.Count; i++) Assert.Equal(ranges[i - 1][1], ranges[i][0]);
            Assert.Equal(bytes.Length, 8 + headerLength + ranges[^1][1]);
        }
    }

    [Fact]
    public void TiedModelsDoNotRepeatTheLmHead()
    {
        using var device = new CpuDevice();
        using var folder = new TempFolder();
        using var trainer = new Trainer(device, TrainingFixtures.TinyConfig, TrainingFixtures.TinyOptions, TrainingFixtures.CopyTask());
        trainer.Initialize();
        trainer.Step();
        Checkpoints.Save(trainer, folder.Path);
        using var file = SafeTensorsFile.Open(Path.Combine(folder.Path, Checkpoints.ModelFile));
        Assert.False(file.Tensors.ContainsKey("lm_head.weight"));
        Assert.True(file.Tensors.ContainsKey("model.embed_tokens.weight"));
    }
}
