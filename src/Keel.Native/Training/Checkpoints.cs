using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Keel.Native.Devices;
using Keel.Native.Distributed;
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
/// Every tensor, weights and moments alike, is stored with its true shape (<see cref="ParameterTensor.Shape"/>, read and
/// written through <see cref="ParameterLayout.View(Devices.Tensor, int)"/>): the embedding table and LM head as [vocabulary, hidden], not the
/// <see cref="ModelConfig.PaddedVocabularySize"/> rows their buffers hold. The padded rows and their moments are zero by
/// construction (zero gradient), so nothing is lost; loading clears each buffer, padding included, and fills the true
/// rows. The files therefore do not depend on the padding: checkpoints written before it existed load unchanged.
/// </para>
/// <para>
/// <see cref="Save"/> writes the four files into a new folder beside the checkpoint (<c>NAME.partial</c>), each flushed
/// to disk, and only then puts it in the checkpoint's place: the old folder is renamed to <c>NAME.previous</c>, the new
/// one to <c>NAME</c>, and the old one deleted. A run stopped at any point leaves a complete checkpoint: the old one
/// untouched, the new one, or (stopped between the two renames) the old one as <c>NAME.previous</c>, which loading
/// finds by itself (<see cref="Locate"/>). Tensors are streamed one at a time, so the host never holds a whole model.
/// Both tensor files also carry the step in their metadata and loading checks it against the trainer state, so
/// files from different checkpoints put together by hand are reported, not used.
/// </para>
/// <para>
/// A data-parallel run writes one checkpoint in the same format, together (every rank calls <see cref="Save"/>; the run
/// folder is shared): rank 0 makes the partial folder and writes the weights (every rank holds them all), the config, the
/// state and the optimizer file's header at its full size; then each rank that holds moments (each its shard under ZeRO 1
/// and 2, rank 0 alone otherwise) writes them into that file at their places, and flushes; rank 0 puts the folder in place
/// only after a barrier that every rank reaches after flushing, so a rank that fails or dies at any point leaves the previous
/// checkpoint whole. The file names each moment tensor by its parameter, whatever the shards were, so
/// <see cref="Resume"/> reads any rank's range of it: a run resumes on another number of ranks, or at another ZeRO stage,
/// as it does on the same.
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

    /// <summary>
    /// Writes <paramref name="trainer"/>'s model, optimizer and state as the checkpoint <paramref name="directory"/>, replacing
    /// it as a whole; in a data-parallel run every rank calls it, with the same folder.
    /// </summary>
    public static void Save(Trainer trainer, string directory)
    {
        ArgumentNullException.ThrowIfNull(trainer);
        ArgumentNullException.ThrowIfNull(directory);
        var ranks = trainer.Collectives;
        var primary = trainer.Rank == 0;
        var final = Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory));
        var partial = final + PartialSuffix;
        if (primary)
        {
            if (Directory.Exists(partial)) Directory.Delete(partial, recursive: true);
            Directory.CreateDirectory(partial);
        }

        var model = trainer.Model;
        var metadata = new Dictionary<string, string>
        {
            ["format"] = "pt",
            [StepKey] = trainer.CompletedSteps.ToString(CultureInfo.InvariantCulture),
            ["producer"] = "Keel.Native",
        };
        var optimizer = trainer.Optimizer;
        var optimizerPath = Path.Combine(partial, OptimizerFile);
        var moments = SafeTensorsLayout.Of(Entries(model.Layout, optimizer.FirstMoment.DType, MomentPrefixes), metadata);
        if (primary)
        {
            WriteWeights(Path.Combine(partial, ModelFile), model.Device, model.Layout, model.Parameters, metadata);
            moments.Create(optimizerPath);
            AtomicFile.WriteText(Path.Combine(partial, ConfigFile), model.Config.ToJson());
            var state = new TrainerState(trainer.CompletedSteps, optimizer.UpdateCount, trainer.ConsecutiveBadSteps, trainer.Data.Tokenizer.Kind, trainer.Data.Source, trainer.Options);
            AtomicFile.WriteText(Path.Combine(partial, StateFile), JsonSerializer.Serialize(state, ModelConfig.JsonOptions));
        }
        // The folder and the optimizer file exist before the other ranks write into it.
        ranks?.Barrier();
        if (optimizer.IsSharded || primary) WriteMoments(optimizerPath, moments, model, optimizer);
        // Every rank's part is on disk before the checkpoint takes its place.
        ranks?.Barrier();
        if (primary)
        {
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
        ranks?.Barrier();
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
        ReadWeights(Path.Combine(Locate(directory), ModelFile), model.Device, model.Layout, step, model.Parameters);
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
    /// The saved options with another memory policy, budget, CUDA graphs setting or ZeRO stage (none of which changes the
    /// results); null for the saved options.
    /// </param>
    /// <param name="collectives">The ranks of a data-parallel run (any number, each reads its own shard of the moments), or null for one process.</param>
    /// <exception cref="ArgumentException">
    /// <paramref name="options"/> differs from the saved options in anything else, or <paramref name="data"/> was made by another tokenizer.
    /// </exception>
    public static Trainer Resume(string directory, IDevice device, TokenDataset data, ModelPrecision? precision = null, TrainingOptions? options = null,
                                 ICollectives? collectives = null)
    {
        ArgumentNullException.ThrowIfNull(data);
        var folder = Locate(directory);
        var (config, state) = ReadConfig(folder);
        if (options is not null && WithoutResources(options, state.Options) != state.Options)
            throw new ArgumentException("A resumed run keeps its training options; only the memory policy, the budget, CUDA graphs and the ZeRO stage may change.", nameof(options));
        options ??= state.Options;
        if (data.Tokenizer.Kind != state.Tokenizer)
            throw new ArgumentException($"The run was trained on {state.Tokenizer} tokens; this data was made by the {data.Tokenizer.Kind} tokenizer.", nameof(data));
        var optimizerPath = Path.Combine(folder, OptimizerFile);
        CheckTensors(optimizerPath, new ParameterLayout(config), state.Step, MomentPrefixes);
        var trainer = new Trainer(device, config, options, data, precision, collectives);
        try
        {
            LoadWeights(trainer.Model, folder, state.Step);
            ReadMoments(optimizerPath, trainer.Model, trainer.Optimizer, state.Step);
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

    /// <summary><paramref name="options"/> with the fields that do not change a run's results taken from <paramref name="saved"/>.</summary>
    internal static TrainingOptions WithoutResources(TrainingOptions options, TrainingOptions saved) =>
        options with { Memory = saved.Memory, MemoryBudget = saved.MemoryBudget, CudaGraphs = saved.CudaGraphs, ZeroStage = saved.ZeroStage };

    /// <summary>The optimizer file's tensor prefixes: AdamW's first and second moments, as PyTorch names them.</summary>
    private static readonly string[] MomentPrefixes = ["exp_avg.", "exp_avg_sq."];

    /// <summary>Every layout tensor under each prefix, in file order, in <paramref name="dtype"/>.</summary>
    private static List<(string Name, DType DType, long[] Shape)> Entries(ParameterLayout layout, DType dtype, string[] prefixes) =>
        [.. prefixes.SelectMany(p => layout.Tensors.Select(t => (p + t.Name, dtype, Extents(t.Shape))))];

    /// <summary>
    /// Writes the optimizer's moments (the whole flat buffers, or its shard) into the optimizer file at their places: each
    /// layout tensor's elements that fall in the optimizer's range, one tensor at a time; then flushes the file to disk.
    /// </summary>
    private static void WriteMoments(string path, SafeTensorsLayout file, KeelModel model, AdamWOptimizer optimizer)
    {
        var layout = model.Layout;
        var dtype = optimizer.FirstMoment.DType;
        var host = new byte[layout.Tensors.Max(t => t.Length) * dtype.SizeOf()];
        using var stream = SafeTensorsLayout.OpenForWriting(path);
        Tensor[] moments = [optimizer.FirstMoment, optimizer.SecondMoment];
        for (var p = 0; p < moments.Length; p++)
        {
            for (var i = 0; i < layout.Tensors.Count; i++)
            {
                if (Overlap(layout.Tensors[i], optimizer) is not { } range) continue;
                var (first, count) = range;
                var bytes = host.AsSpan(0, (int)(count * dtype.SizeOf()));
                var view = moments[p].Slice(first - optimizer.ShardStart, count);
                if (dtype == DType.Float64) model.Device.CopyToHost(view, MemoryMarshal.Cast<byte, double>(bytes));
                else model.Device.CopyToHost(view, MemoryMarshal.Cast<byte, float>(bytes));
                stream.Position = file.FileOffset(p * layout.Tensors.Count + i) + (first - layout.Tensors[i].Offset) * dtype.SizeOf();
                stream.Write(bytes);
            }
        }
        stream.Flush(flushToDisk: true);
    }

    /// <summary>
    /// Fills the optimizer's moments (whole, or its shard: any range, whatever shards wrote the file) from the optimizer
    /// file, converted to the moments' type; the alignment padding between tensors stays zero.
    /// </summary>
    private static void ReadMoments(string path, KeelModel model, AdamWOptimizer optimizer, int step)
    {
        using var file = SafeTensorsFile.Open(path);
        var found = CheckTensors(file, model.Layout, step, MomentPrefixes);
        Tensor[] moments = [optimizer.FirstMoment, optimizer.SecondMoment];
        foreach (var moment in moments) model.Device.Clear(moment);
        var host = new byte[found.Max(f => f.Info.ByteLength)];
        foreach (var (info, prefix, index) in found)
        {
            var tensor = model.Layout.Tensors[index];
            if (Overlap(tensor, optimizer) is not { } range) continue;
            var (first, count) = range;
            var size = info.DType.SizeOf();
            var bytes = host.AsSpan(0, (int)(count * size));
            file.Read(info, (first - tensor.Offset) * size, bytes);
            var destination = moments[prefix].Slice(first - optimizer.ShardStart, count);
            if (info.DType == DType.Float64) HostCopy.Upload<double>(model.Device, MemoryMarshal.Cast<byte, double>(bytes), destination);
            else HostCopy.Upload<float>(model.Device, MemoryMarshal.Cast<byte, float>(bytes), destination);
        }
    }

    /// <summary>The flat elements of <paramref name="tensor"/> that lie in the optimizer's range, as (first, count); null when none do.</summary>
    private static (long First, long Count)? Overlap(ParameterTensor tensor, AdamWOptimizer optimizer)
    {
        var first = Math.Max(tensor.Offset, optimizer.ShardStart);
        var end = Math.Min(tensor.Offset + tensor.Length, optimizer.ShardStart + optimizer.FirstMoment.Length);
        return end > first ? (first, end - first) : null;
    }

    private static string ReadText(string path) =>
        File.Exists(path) ? File.ReadAllText(path) : throw new FileNotFoundException($"{path} does not exist: not a complete checkpoint.", path);

    /// <summary>
    /// Writes the weights file: every layout tensor of the flat parameter buffer under its name (the tied LM head is not
    /// repeated), in the buffer's type, copying one tensor at a time to the host.
    /// </summary>
    private static void WriteWeights(string path, IDevice device, ParameterLayout layout, Tensor flat, Dictionary<string, string> metadata)
    {
        var dtype = flat.DType;
        var host = new byte[layout.Tensors.Max(t => t.Length) * dtype.SizeOf()];
        SafeTensors.Write(path, Entries(layout, dtype, [""]), metadata, (i, stream) =>
        {
            var view = layout.View(flat, i);
            var bytes = host.AsSpan(0, (int)view.ByteLength);
            if (dtype == DType.Float64) device.CopyToHost(view, MemoryMarshal.Cast<byte, double>(bytes));
            else device.CopyToHost(view, MemoryMarshal.Cast<byte, float>(bytes));
            stream.Write(bytes);
        });
    }

    /// <summary>
    /// Fills the flat parameter buffer from the weights file's tensors (after checking them as the header check does),
    /// one tensor at a time, converted to the buffer's type.
    /// </summary>
    private static void ReadWeights(string path, IDevice device, ParameterLayout layout, int step, Tensor flat)
    {
        using var file = SafeTensorsFile.Open(path);
        var found = CheckTensors(file, layout, step, [""]);
        // The padding (between tensors, and the vocabulary matrices' rows past the vocabulary) is zero in a fresh model and
        // stays zero in training; make it so here too, since the files hold the true rows only.
        device.Clear(flat);
        var host = new byte[found.Max(f => f.Info.ByteLength)];
        foreach (var (info, _, index) in found)
        {
            var destination = layout.View(flat, index);
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
