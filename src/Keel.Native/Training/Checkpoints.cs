using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Keel.Native.Devices;
using Keel.Native.Model;
using Keel.Native.Numerics;

namespace Keel.Native.Training;

/// <summary>The part of a run's state that is not tensors, saved as <c>trainer_state.json</c>.</summary>
/// <param name="Step">Steps completed.</param>
/// <param name="UpdateCount">AdamW updates applied (t of the last).</param>
/// <param name="ConsecutiveBadSteps">Bad steps in a row at the end of <paramref name="Step"/>.</param>
/// <param name="Tokenizer">The tokenizer of the data.</param>
/// <param name="DataSource">Where the training text came from.</param>
/// <param name="Options">The run's training options.</param>
public sealed record TrainerState(int Step, int UpdateCount, int ConsecutiveBadSteps, TokenizerKind Tokenizer, string DataSource, TrainingOptions Options);

/// <summary>
/// Checkpoints: a folder with <c>model.safetensors</c> (each parameter tensor under its Llama name, row-major
/// [out, in], in the master type; no <c>lm_head.weight</c> when tied, as Hugging Face writes tied models),
/// <c>config.json</c> (the <see cref="ModelConfig"/>), <c>optimizer.safetensors</c> (AdamW's moments as
/// <c>exp_avg.NAME</c> and <c>exp_avg_sq.NAME</c>) and <c>trainer_state.json</c> (<see cref="TrainerState"/>).
/// Each file is written atomically and the state file last; both tensor files carry the step in their metadata,
/// and loading checks that every file speaks of the same step, so a checkpoint cut short is reported, not used.
/// </summary>
public static class Checkpoints
{
    /// <summary>The weights' file name.</summary>
    public const string ModelFile = "model.safetensors";

    /// <summary>The optimizer state's file name.</summary>
    public const string OptimizerFile = "optimizer.safetensors";

    /// <summary>The model config's file name.</summary>
    public const string ConfigFile = "config.json";

    /// <summary>The trainer state's file name.</summary>
    public const string StateFile = "trainer_state.json";

    private const string StepKey = "step";

    /// <summary>Writes <paramref name="trainer"/>'s model, optimizer and state into <paramref name="directory"/> (created if needed).</summary>
    public static void Save(Trainer trainer, string directory)
    {
        ArgumentNullException.ThrowIfNull(trainer);
        ArgumentNullException.ThrowIfNull(directory);
        Directory.CreateDirectory(directory);
        var model = trainer.Model;
        var step = trainer.CompletedSteps.ToString(CultureInfo.InvariantCulture);
        var metadata = new Dictionary<string, string> { ["format"] = "pt", [StepKey] = step, ["producer"] = "Keel.Native" };
        var parameters = ReadFlat(model.Device, model.Parameters);
        SafeTensors.Write(Path.Combine(directory, ModelFile), Named(model.Layout, parameters, ""), metadata);
        var moments = Named(model.Layout, ReadFlat(model.Device, trainer.Optimizer.FirstMoment), "exp_avg.")
            .Concat(Named(model.Layout, ReadFlat(model.Device, trainer.Optimizer.SecondMoment), "exp_avg_sq.")).ToList();
        SafeTensors.Write(Path.Combine(directory, OptimizerFile), moments, metadata);
        AtomicFile.WriteText(Path.Combine(directory, ConfigFile), model.Config.ToJson());
        var state = new TrainerState(trainer.CompletedSteps, trainer.Optimizer.UpdateCount, trainer.ConsecutiveBadSteps, trainer.Tokenizer, trainer.Data.Source, trainer.Options);
        AtomicFile.WriteText(Path.Combine(directory, StateFile), JsonSerializer.Serialize(state, ModelConfig.JsonOptions));
    }

    /// <summary>Reads the model config and trainer state of a checkpoint.</summary>
    /// <exception cref="FileNotFoundException">The folder or a file is missing (the message gives the path).</exception>
    /// <exception cref="InvalidDataException">A file is corrupt (the message gives the path and why).</exception>
    public static (ModelConfig Config, TrainerState State) ReadConfig(string directory)
    {
        var folder = RequireFolder(directory);
        var configPath = Path.Combine(folder, ConfigFile);
        var statePath = Path.Combine(folder, StateFile);
        ModelConfig config;
        try
        {
            config = ModelConfig.FromJson(ReadText(configPath));
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{configPath}: {e.Message}", e);
        }
        TrainerState state;
        try
        {
            state = JsonSerializer.Deserialize<TrainerState>(ReadText(statePath), ModelConfig.JsonOptions) ?? throw new InvalidDataException("the state is null");
        }
        catch (Exception e) when (e is JsonException or ArgumentException or InvalidDataException)
        {
            throw new InvalidDataException($"{statePath} is not a valid trainer state: {e.Message}", e);
        }
        return (config, state);
    }

    /// <summary>Loads a checkpoint's weights into <paramref name="model"/> (whose config must match the checkpoint's).</summary>
    /// <exception cref="InvalidDataException">A tensor is missing, has the wrong shape, or the file's step disagrees with <paramref name="step"/>.</exception>
    public static void LoadWeights(KeelModel model, string directory, int step)
    {
        ArgumentNullException.ThrowIfNull(model);
        var path = Path.Combine(RequireFolder(directory), ModelFile);
        var flat = Flatten(model.Layout, path, step, "");
        model.LoadParameters<double>(flat);
    }

    /// <summary>
    /// Rebuilds a trainer from a checkpoint written by <see cref="Save"/>: the same config, options, tokenizer,
    /// weights, moments and counters, so that its next steps are those the saved run would have taken.
    /// </summary>
    public static Trainer Resume(string directory, IDevice device, TokenDataset data, ModelPrecision? precision = null)
    {
        var (config, state) = ReadConfig(directory);
        var folder = RequireFolder(directory);
        var trainer = new Trainer(device, config, state.Options, data, state.Tokenizer, precision);
        try
        {
            LoadWeights(trainer.Model, folder, state.Step);
            var optimizerPath = Path.Combine(folder, OptimizerFile);
            WriteFlat(device, trainer.Optimizer.FirstMoment, Flatten(trainer.Model.Layout, optimizerPath, state.Step, "exp_avg."));
            WriteFlat(device, trainer.Optimizer.SecondMoment, Flatten(trainer.Model.Layout, optimizerPath, state.Step, "exp_avg_sq."));
            trainer.Optimizer.UpdateCount = state.UpdateCount;
            trainer.CompletedSteps = state.Step;
            trainer.ConsecutiveBadSteps = state.ConsecutiveBadSteps;
            return trainer;
        }
        catch
        {
            trainer.Dispose();
            throw;
        }
    }

    private static string RequireFolder(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        var full = Path.GetFullPath(directory);
        if (!Directory.Exists(full)) throw new DirectoryNotFoundException($"Checkpoint folder {full} does not exist.");
        return full;
    }

    private static string ReadText(string path) =>
        File.Exists(path) ? File.ReadAllText(path) : throw new FileNotFoundException($"{path} does not exist: not a complete checkpoint.", path);

    /// <summary>The tensors of a flat buffer under their names (the tied LM head is not repeated).</summary>
    private static List<(string, SafeTensor)> Named(ParameterLayout layout, Array flat, string prefix)
    {
        var dtype = flat is double[] ? DType.Float64 : DType.Float32;
        var size = dtype.SizeOf();
        var bytes = flat is double[] d ? MemoryMarshal.AsBytes(d.AsSpan()).ToArray() : MemoryMarshal.AsBytes(((float[])flat).AsSpan()).ToArray();
        var shape = (Keel.Native.Devices.TensorShape s) => Enumerable.Range(0, s.Rank).Select(i => s[i]).ToArray();
        return layout.Tensors.Select(t => (prefix + t.Name, new SafeTensor(dtype, shape(t.Shape), bytes.AsSpan((int)(t.Offset * size), (int)(t.Length * size)).ToArray()))).ToList();
    }

    /// <summary>A flat buffer from a file's tensors named <paramref name="prefix"/> + each layout name, checking shapes and the step.</summary>
    private static double[] Flatten(ParameterLayout layout, string path, int step, string prefix)
    {
        var (tensors, metadata) = SafeTensors.Read(path);
        if (!metadata.TryGetValue(StepKey, out var saved) || saved != step.ToString(CultureInfo.InvariantCulture))
            throw new InvalidDataException($"{path} is from step {saved ?? "(none)"} but the trainer state is from step {step}: the checkpoint was cut short while being written.");
        var flat = new double[layout.Length];
        foreach (var t in layout.Tensors)
        {
            if (!tensors.TryGetValue(prefix + t.Name, out var tensor))
                throw new InvalidDataException($"{path} has no tensor {prefix + t.Name}.");
            var expected = Enumerable.Range(0, t.Shape.Rank).Select(i => t.Shape[i]).ToArray();
            if (!tensor.Shape.SequenceEqual(expected))
                throw new InvalidDataException($"{path}: {prefix + t.Name} has shape [{string.Join(", ", tensor.Shape)}]; the config needs [{string.Join(", ", expected)}].");
            tensor.ToDoubles().CopyTo(flat, t.Offset);
        }
        return flat;
    }

    private static Array ReadFlat(IDevice device, Tensor tensor)
    {
        if (tensor.DType == DType.Float64)
        {
            var values = new double[tensor.Length];
            device.CopyToHost<double>(tensor, values);
            return values;
        }
        var floats = new float[tensor.Length];
        device.CopyToHost<float>(tensor, floats);
        return floats;
    }

    private static void WriteFlat(IDevice device, Tensor tensor, double[] values)
    {
        if (tensor.DType == DType.Float64) device.CopyFromHost<double>(values, tensor);
        else device.CopyFromHost<float>(Array.ConvertAll(values, v => (float)v), tensor);
    }
}
