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
/// <para>
/// <see cref="Save"/> writes the four files into a new folder beside the checkpoint (<c>NAME.partial</c>), each flushed
/// to disk, and only then puts it in the checkpoint's place: the old folder is renamed to <c>NAME.previous</c>, the new
/// one to <c>NAME</c>, and the old one deleted. A run stopped at any point leaves a complete checkpoint: the old one
/// untouched, the new one, or (stopped between the two renames) the old one as <c>NAME.previous</c>, which loading
/// finds by itself (<see cref="Locate"/>). Tensors are streamed one at a time, so the host never holds a whole model.
/// Both tensor files also carry the step in their metadata and loading checks it against the trainer state, so
/// files from different checkpoints put together by hand are reported, not used.
/// </para>
/// </summary>
/// <example>
/// <code>
/// Checkpoints.Save(trainer, "runs/demo/checkpoint");
/// // later, with the same data:
/// using var resumed = Checkpoints.Resume("runs/demo", device, data);
/// while (resumed.CompletedSteps &lt; resumed.Options.Steps) resumed.Step();
/// </code>
/// </example>
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

    /// <summary>The suffix of the folder a new checkpoint is written into before it takes the checkpoint's place.</summary>
    public const string PartialSuffix = ".partial";

    /// <summary>The suffix the old checkpoint bears while the new one takes its place.</summary>
    public const string PreviousSuffix = ".previous";

    private const string StepKey = "step";

    /// <summary>Writes <paramref name="trainer"/>'s model, optimizer and state as the checkpoint <paramref name="directory"/>, replacing it as a whole.</summary>
    public static void Save(Trainer trainer, string directory)
    {
        ArgumentNullException.ThrowIfNull(trainer);
        ArgumentNullException.ThrowIfNull(directory);
        var final = Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory));
        var partial = final + PartialSuffix;
        if (Directory.Exists(partial)) Directory.Delete(partial, recursive: true);
        Directory.CreateDirectory(partial);

        var model = trainer.Model;
        var metadata = new Dictionary<string, string>
        {
            ["format"] = "pt",
            [StepKey] = trainer.CompletedSteps.ToString(CultureInfo.InvariantCulture),
            ["producer"] = "Keel.Native",
        };
        WriteTensors(Path.Combine(partial, ModelFile), model.Device, model.Layout, [("", model.Parameters)], metadata);
        WriteTensors(Path.Combine(partial, OptimizerFile), model.Device, model.Layout,
                     [("exp_avg.", trainer.Optimizer.FirstMoment), ("exp_avg_sq.", trainer.Optimizer.SecondMoment)], metadata);
        AtomicFile.WriteText(Path.Combine(partial, ConfigFile), model.Config.ToJson());
        var state = new TrainerState(trainer.CompletedSteps, trainer.Optimizer.UpdateCount, trainer.ConsecutiveBadSteps, trainer.Data.Tokenizer.Kind, trainer.Data.Source, trainer.Options);
        AtomicFile.WriteText(Path.Combine(partial, StateFile), JsonSerializer.Serialize(state, ModelConfig.JsonOptions));

        var previous = final + PreviousSuffix;
        if (Directory.Exists(final))
        {
            // A complete checkpoint stands in place, so an older one beside it is stale.
            if (Directory.Exists(previous)) Directory.Delete(previous, recursive: true);
            Directory.Move(final, previous);
        }
        Directory.Move(partial, final);
        if (Directory.Exists(previous)) Directory.Delete(previous, recursive: true);
    }

    /// <summary>
    /// The checkpoint folder <paramref name="path"/> names: the path itself, or the <c>checkpoint</c> folder of the run
    /// folder it names; in either case, when the folder is missing because a save was stopped between its two renames,
    /// the complete older checkpoint beside it (<c>NAME.previous</c>).
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">There is no such folder (the message gives the path).</exception>
    public static string Locate(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));
        foreach (var candidate in new[] { Path.Combine(full, TrainingLoop.CheckpointFolder), full })
        {
            if (Directory.Exists(candidate)) return candidate;
            if (Directory.Exists(candidate + PreviousSuffix)) return candidate + PreviousSuffix;
        }
        throw new DirectoryNotFoundException($"Checkpoint folder {full} does not exist.");
    }

    /// <summary>
    /// Reads the model config and trainer state of a checkpoint (found by <see cref="Locate"/>), and checks the header
    /// of its weights against them (every tensor present, with its shape and a float type, and the same step), so that a
    /// caller learns of a broken checkpoint before allocating anything.
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">The folder is missing (the message gives the path).</exception>
    /// <exception cref="FileNotFoundException">A file is missing (the message gives the path).</exception>
    /// <exception cref="InvalidDataException">A file is corrupt (the message gives the path and why).</exception>
    public static (ModelConfig Config, TrainerState State) ReadConfig(string directory)
    {
        var folder = Locate(directory);
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
            if (state.Options is null) throw new InvalidDataException("it has no options");
            if (state.DataSource is null) throw new InvalidDataException("it has no data_source");
            if (state.Step < 0 || state.UpdateCount < 0 || state.UpdateCount > state.Step || state.ConsecutiveBadSteps < 0 || state.ConsecutiveBadSteps > state.Step)
                throw new InvalidDataException($"its counters do not fit together (step {state.Step}, update_count {state.UpdateCount}, consecutive_bad_steps {state.ConsecutiveBadSteps})");
            if (!Enum.IsDefined(state.Tokenizer)) throw new InvalidDataException($"its tokenizer {state.Tokenizer} is unknown");
        }
        catch (Exception e) when (e is JsonException or ArgumentException or InvalidDataException)
        {
            throw new InvalidDataException($"{statePath} is not a valid trainer state: {e.Message.TrimEnd('.')}.", e);
        }
        CheckTensors(Path.Combine(folder, ModelFile), new ParameterLayout(config), state.Step, [""]);
        return (config, state);
    }

    /// <summary>Loads a checkpoint's weights (found by <see cref="Locate"/>) into <paramref name="model"/>, whose config must match the checkpoint's.</summary>
    /// <exception cref="InvalidDataException">A tensor is missing, has the wrong shape or type, or the file's step disagrees with <paramref name="step"/>.</exception>
    public static void LoadWeights(KeelModel model, string directory, int step)
    {
        ArgumentNullException.ThrowIfNull(model);
        ReadTensors(Path.Combine(Locate(directory), ModelFile), model.Device, model.Layout, step, [("", model.Parameters)]);
        model.RefreshOperands();
    }

    /// <summary>
    /// Rebuilds a trainer from a checkpoint written by <see cref="Save"/> (found by <see cref="Locate"/>): the same config, options, tokenizer,
    /// weights, moments and counters, so that its next steps are those the saved run would have taken.
    /// </summary>
    /// <param name="directory">The checkpoint, or the run folder holding it.</param>
    /// <param name="device">Where to train.</param>
    /// <param name="data">The run's data, tokenized as the state says (<see cref="TrainerState.Tokenizer"/>).</param>
    /// <param name="precision">Element types; by default <see cref="ModelPrecision.For"/> the device.</param>
    /// <param name="options">
    /// The saved options with another memory policy, budget or CUDA graphs setting (none of which changes the results);
    /// null for the saved options.
    /// </param>
    /// <exception cref="ArgumentException">
    /// <paramref name="options"/> differs from the saved options in anything else, or <paramref name="data"/> was made by another tokenizer.
    /// </exception>
    public static Trainer Resume(string directory, IDevice device, TokenDataset data, ModelPrecision? precision = null, TrainingOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(data);
        var folder = Locate(directory);
        var (config, state) = ReadConfig(folder);
        if (options is not null && options with { Memory = state.Options.Memory, MemoryBudget = state.Options.MemoryBudget, CudaGraphs = state.Options.CudaGraphs } != state.Options)
            throw new ArgumentException("A resumed run keeps its training options; only the memory policy, the budget and CUDA graphs may change.", nameof(options));
        options ??= state.Options;
        if (data.Tokenizer.Kind != state.Tokenizer)
            throw new ArgumentException($"The run was trained on {state.Tokenizer} tokens; this data was made by the {data.Tokenizer.Kind} tokenizer.", nameof(data));
        var optimizerPath = Path.Combine(folder, OptimizerFile);
        string[] moments = ["exp_avg.", "exp_avg_sq."];
        CheckTensors(optimizerPath, new ParameterLayout(config), state.Step, moments);
        var trainer = new Trainer(device, config, options, data, precision);
        try
        {
            LoadWeights(trainer.Model, folder, state.Step);
            ReadTensors(optimizerPath, device, trainer.Model.Layout, state.Step,
                        [(moments[0], trainer.Optimizer.FirstMoment), (moments[1], trainer.Optimizer.SecondMoment)]);
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

    private static string ReadText(string path) =>
        File.Exists(path) ? File.ReadAllText(path) : throw new FileNotFoundException($"{path} does not exist: not a complete checkpoint.", path);

    /// <summary>
    /// Writes one file holding, for each (prefix, flat buffer) pair, every layout tensor of the buffer under prefix + its
    /// name (the tied LM head is not repeated), in the buffer's type, copying one tensor at a time to the host.
    /// </summary>
    private static void WriteTensors(string path, IDevice device, ParameterLayout layout, (string Prefix, Tensor Flat)[] buffers, Dictionary<string, string> metadata)
    {
        var dtype = buffers[0].Flat.DType;
        var entries = buffers.SelectMany(b => layout.Tensors.Select(t => (b.Prefix + t.Name, dtype, Extents(t.Shape)))).ToList();
        var host = new byte[layout.Tensors.Max(t => t.Length) * dtype.SizeOf()];
        SafeTensors.Write(path, entries, metadata, (i, stream) =>
        {
            var (prefix, flat) = buffers[i / layout.Tensors.Count];
            var view = layout.View(flat, i % layout.Tensors.Count);
            var bytes = host.AsSpan(0, (int)view.ByteLength);
            if (dtype == DType.Float64) device.CopyToHost(view, MemoryMarshal.Cast<byte, double>(bytes));
            else device.CopyToHost(view, MemoryMarshal.Cast<byte, float>(bytes));
            stream.Write(bytes);
        });
    }

    /// <summary>
    /// Fills each (prefix, flat buffer) pair from the file's tensors named prefix + each layout name (after
    /// checking them as the header check does), one tensor at a time, converted to the buffer's type.
    /// </summary>
    private static void ReadTensors(string path, IDevice device, ParameterLayout layout, int step, (string Prefix, Tensor Flat)[] buffers)
    {
        using var file = SafeTensorsFile.Open(path);
        var found = CheckTensors(file, layout, step, [.. buffers.Select(b => b.Prefix)]);
        // The alignment padding between tensors is zero in a fresh model; make it so here too.
        foreach (var (_, flat) in buffers) device.Clear(flat);
        var host = new byte[found.Max(f => f.Info.ByteLength)];
        foreach (var (info, prefix, index) in found)
        {
            var destination = layout.View(buffers[prefix].Flat, index);
            var bytes = host.AsSpan(0, (int)info.ByteLength);
            file.Read(info, bytes);
            if (info.DType == DType.Float64) HostCopy.Upload<double>(device, MemoryMarshal.Cast<byte, double>(bytes), destination);
            else HostCopy.Upload<float>(device, MemoryMarshal.Cast<byte, float>(bytes), destination);
        }
    }

    /// <summary>Checks the header of a checkpoint's tensor file against the layout and the step, touching no device.</summary>
    private static void CheckTensors(string path, ParameterLayout layout, int step, string[] prefixes)
    {
        using var file = SafeTensorsFile.Open(path);
        CheckTensors(file, layout, step, prefixes);
    }

    /// <summary>
    /// For each prefix and layout tensor, the file's tensor named prefix + its name, after checking the step, each
    /// tensor's presence, shape and type; returned with the prefix's and the tensor's indices.
    /// </summary>
    private static List<(SafeTensorInfo Info, int Prefix, int Index)> CheckTensors(SafeTensorsFile file, ParameterLayout layout, int step, string[] prefixes)
    {
        if (!file.Metadata.TryGetValue(StepKey, out var saved) || saved != step.ToString(CultureInfo.InvariantCulture))
            throw new InvalidDataException($"{file.Path} is from step {saved ?? "(none)"} but the trainer state is from step {step}: the files come from different checkpoints.");
        var found = new List<(SafeTensorInfo, int, int)>();
        for (var p = 0; p < prefixes.Length; p++)
        {
            for (var i = 0; i < layout.Tensors.Count; i++)
            {
                var t = layout.Tensors[i];
                var name = prefixes[p] + t.Name;
                if (!file.Tensors.TryGetValue(name, out var info))
                    throw new InvalidDataException($"{file.Path} has no tensor {name}.");
                var expected = Extents(t.Shape);
                if (!info.Shape.SequenceEqual(expected))
                    throw new InvalidDataException($"{file.Path}: {name} has shape [{string.Join(", ", info.Shape)}]; the config needs [{string.Join(", ", expected)}].");
                if (info.DType is not (DType.Float32 or DType.Float64))
                    throw new InvalidDataException($"{file.Path}: {name} is {SafeTensors.Name(info.DType)}; checkpoints hold F32 or F64 tensors.");
                found.Add((info, p, i));
            }
        }
        return found;
    }

    private static long[] Extents(TensorShape shape) => [.. Enumerable.Range(0, shape.Rank).Select(i => shape[i])];
}
