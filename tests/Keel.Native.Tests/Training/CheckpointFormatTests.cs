using System.Buffers.Binary;
using System.Text.Json.Nodes;
using Keel.Native.Devices.Cpu;
using Keel.Native.Model;
using Keel.Native.Numerics;
using Keel.Native.Tests.Support;
using Keel.Native.Training;

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
