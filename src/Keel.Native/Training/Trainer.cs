using System.Diagnostics;
using Keel.Native.Devices;
using Keel.Native.Distributed;
using Keel.Native.Memory;
using Keel.Native.Model;

namespace Keel.Native.Training;

/// <summary>What one optimizer step did.</summary>
/// <param name="Step">The step number, from 1.</param>
/// <param name="Loss">Mean token loss over the step's micro-batches (NaN or infinite for a bad step).</param>
/// <param name="LearningRate">The scheduled learning rate.</param>
/// <param name="GradientNorm">Global gradient norm before clipping.</param>
/// <param name="Skipped">True when the loss or the gradients were not finite and no update was applied.</param>
/// <param name="Tokens">Tokens the step trained on.</param>
/// <param name="Seconds">Wall time of the step.</param>
/// <param name="IssueSeconds">
/// Host time spent issuing the forward and backward passes (or replaying their CUDA graph), up to the wait for the
/// losses: on a GPU, where ops are asynchronous, the launch overhead; on the CPU device the computation itself.
/// </param>
public readonly record struct StepResult(int Step, double Loss, double LearningRate, double GradientNorm, bool Skipped, int Tokens, double Seconds, double IssueSeconds);

/// <summary>Thrown when too many consecutive steps had a NaN or infinite loss or gradient.</summary>
public sealed class TrainingDivergedException(string message) : Exception(message);

/// <summary>
/// Trains one model on one device: each <see cref="Step"/> zeroes the gradients, runs forward and backward on
/// each micro-batch (their gradients sum; the loss is the mean over all their tokens), measures the global
/// gradient norm, and applies clipped AdamW at the scheduled learning rate, unless the loss or the gradients
/// are NaN or infinite: then the step is skipped and counted, and after
/// <see cref="TrainingOptions.MaxConsecutiveBadSteps"/> in a row the trainer stops with
/// <see cref="TrainingDivergedException"/>. On the CPU device a run is reproducible bit for bit from its seed,
/// and <see cref="Checkpoints"/> resumes it exactly.
/// <para>
/// The model runs the memory plan of <see cref="TrainingOptions.Memory"/> (auto: the least recompute that fits the
/// budget). On a device with <see cref="IDevice.GraphCapture"/> (a GPU) and <see cref="TrainingOptions.CudaGraphs"/>, the
/// first step runs op by op (it compiles kernels and builds the RoPE table; the kernels' scratch was reserved from the
/// plan with the model); the second captures one micro-batch's forward and backward into a CUDA graph, and every micro-batch from then on uploads its batch into the
/// model's fixed buffers and replays that graph. The optimizer (whose learning rate and step number change) runs outside
/// the graph.
/// </para>
/// <para>
/// Data parallel (with <see cref="ICollectives"/> over several ranks): <see cref="TrainingOptions.BatchSize"/> stays the
/// global batch, and each rank trains on its own contiguous rows of every micro-batch (rank r takes rows r·b to
/// r·b + b − 1, b = BatchSize / ranks), which are a function of (seed, step, micro-batch, row) like the whole batch. Each
/// rank's loss gradient is scaled by one over the global tokens of the step, so the gradients summed over the ranks
/// (<see cref="GradientReduction"/>, by the ZeRO stage of <see cref="TrainingOptions.ZeroStage"/>) are those of the global
/// mean loss, before clipping; the loss, the gradient norm and the validation loss are global, and every rank takes the
/// same decisions. Every rank must have been given the same model, options and data (checked when the trainer is built).
/// </para>
/// </summary>
/// <example>
/// <code>
/// var data = TokenDataset.FromFile("input.txt", new ByteTokenizer(), validationFraction: 0.1);
/// using var trainer = new Trainer(device, new ModelConfig { SubLayers = 8 }, new TrainingOptions { Steps = 100 }, data);
/// trainer.Initialize();
/// while (trainer.CompletedSteps &lt; trainer.Options.Steps) Console.WriteLine(trainer.Step().Loss);
/// </code>
/// </example>
public sealed class Trainer : IDisposable
{
    private readonly int[] _tokens, _targets;
    private readonly IGraphCapture? _graphs;
    private readonly Action _forwardBackward;
    private readonly float _lossGradientScale;
    private readonly ICollectives? _collectives;
    private readonly GradientReduction? _reduction;
    private IDeviceGraph? _stepGraph;

    /// <summary>Builds the model and optimizer; checks everything before allocating.</summary>
    /// <param name="device">Where to train.</param>
    /// <param name="config">The model (validated here).</param>
    /// <param name="options">How to train.</param>
    /// <param name="data">Tokenized training and validation text, with its tokenizer (recorded in checkpoints).</param>
    /// <param name="precision">Element types; by default <see cref="ModelPrecision.For"/> the device.</param>
    /// <param name="collectives">
    /// The ranks of a data-parallel run (every rank builds its trainer with the same arguments); null for a run of one
    /// process. One rank with collectives runs the data-parallel path (its collectives are copies).
    /// </param>
    /// <exception cref="ArgumentException">
    /// The config cannot work, its vocabulary is smaller than the tokenizer's, the data is shorter than one sequence, the
    /// batch does not divide among the ranks, or the memory plan does not fit the budget (<see cref="MemoryBudgetException"/>,
    /// saying what would).
    /// </exception>
    /// <exception cref="DistributedException">The ranks were not given the same model, options and data (on every rank).</exception>
    public Trainer(IDevice device, ModelConfig config, TrainingOptions options, TokenDataset data, ModelPrecision? precision = null, ICollectives? collectives = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(data);
        if (collectives is not null)
        {
            // First, while every rank is sure to get here: was every rank given the same run?
            collectives.RequireSame(RunFingerprint.Parts(config, options, data));
            _collectives = collectives;
        }
        config.Validate();
        var tokenizer = data.Tokenizer;
        if (config.VocabularySize < tokenizer.VocabularySize)
            throw new ArgumentException($"VocabularySize ({config.VocabularySize}) is smaller than the {tokenizer.Kind} tokenizer's {tokenizer.VocabularySize}.", nameof(ModelConfig.VocabularySize));
        data.RequireWindows(config.SequenceLength);
        Options = options;
        Data = data;
        precision ??= ModelPrecision.For(device);
        var plan = PlanMemory(device, config, precision, options, _collectives is null ? Sharding.None : new Sharding(_collectives.Size, options.ZeroStage));
        Model = new KeelModel(device, config, precision, plan.Inventory.BatchSize, plan);
        // Buckets reduced during the backward would put collectives inside the captured graph.
        if (options.CudaGraphs && !plan.Inventory.Sharding.ShardsGradients) _graphs = device.GraphCapture;
        try
        {
            Optimizer = new AdamWOptimizer(Model, options, _collectives);
            if (_collectives is not null) _reduction = new GradientReduction(Model, Optimizer, _collectives);
        }
        catch
        {
            Optimizer?.Dispose();
            Model.Dispose();
            throw;
        }
        _tokens = new int[Model.Tokens];
        _targets = new int[Model.Tokens];
        // The mean over every token of the step: each micro-batch's dLogits carry 1 / (tokens per step).
        _lossGradientScale = 1f / TokensPerStep;
        _forwardBackward = ForwardBackward;
    }

    /// <summary>The model being trained.</summary>
    public KeelModel Model { get; }

    /// <summary>The optimizer and its state.</summary>
    public AdamWOptimizer Optimizer { get; }

    /// <summary>The run's options.</summary>
    public TrainingOptions Options { get; }

    /// <summary>The data, with its tokenizer.</summary>
    public TokenDataset Data { get; }

    /// <summary>Steps done so far (skipped ones included).</summary>
    public int CompletedSteps { get; internal set; }

    /// <summary>Bad steps in a row just before now.</summary>
    public int ConsecutiveBadSteps { get; internal set; }

    /// <summary>Tokens per optimizer step (over every rank).</summary>
    public int TokensPerStep => Model.Tokens * Options.AccumulationSteps * Ranks;

    /// <summary>The data-parallel ranks (1 for a run of one process).</summary>
    public int Ranks => _collectives?.Size ?? 1;

    /// <summary>This process's rank (0 for a run of one process).</summary>
    public int Rank => _collectives?.Rank ?? 0;

    /// <summary>The data-parallel collectives, or null for a run of one process.</summary>
    public ICollectives? Collectives => _collectives;

    /// <summary>Bytes the model and the optimizer allocated on the device.</summary>
    public long AllocatedBytes => Model.AllocatedBytes + Optimizer.AllocatedBytes + Optimizer.GradientShardBytes;

    /// <summary>
    /// True when steps after the first replay a CUDA graph: <see cref="TrainingOptions.CudaGraphs"/> on a device with
    /// <see cref="IDevice.GraphCapture"/> (a GPU; not a <see cref="ProfiledDevice"/>, which times every op on its own).
    /// </summary>
    public bool UsesCudaGraphs => _graphs is not null;

    /// <summary>
    /// The plan for <paramref name="options"/>' memory policy and budget (auto's default budget: the device's memory), for one
    /// rank of <paramref name="sharding"/>: its share of the batch and its shards (default <see cref="Sharding.None"/>, a
    /// run of one process).
    /// </summary>
    /// <exception cref="ArgumentException">The batch does not divide among the ranks.</exception>
    /// <exception cref="MemoryBudgetException">Auto found nothing that fits, or the chosen policy needs more than the budget.</exception>
    public static MemoryPlan PlanMemory(IDevice device, ModelConfig config, ModelPrecision precision, TrainingOptions options, Sharding? sharding = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(options);
        sharding ??= Sharding.None;
        var inventory = new MemoryInventory(config, precision, sharding.LocalBatch(options.BatchSize), MemoryTarget.For(device), sharding);
        var budget = options.MemoryBudget ?? (options.Memory.Kind == MemoryPolicyKind.Auto ? TrainingDevices.MemoryBytes(device) : null);
        var plan = MemoryPlanner.Plan(inventory, options.Memory, budget);
        if (budget is { } b && !plan.Fits(b))
        {
            var hint = "";
            try
            {
                hint = $"; auto would choose {MemoryPlanner.Auto(inventory, b).Policy}";
            }
            catch (MemoryBudgetException e)
            {
                hint = $"; {e.Message}";
            }
            throw new MemoryBudgetException($"The {plan.Policy} memory policy needs {ByteSize.Format(plan.TotalBytes)}, more than the budget of {ByteSize.Format(b)}{hint}", plan.TotalBytes);
        }
        return plan;
    }

    /// <summary>Initializes the parameters from <see cref="TrainingOptions.Seed"/>.</summary>
    public void Initialize() => Model.Initialize(Options.Seed);

    /// <summary>Runs the next optimizer step (allocating nothing on the host or the device).</summary>
    /// <exception cref="TrainingDivergedException">This was the last allowed bad step in a row.</exception>
    public StepResult Step()
    {
        var started = Stopwatch.GetTimestamp();
        var step = CompletedSteps + 1;
        Model.ZeroGradients();
        double lossSum = 0;
        long issue = 0;
        for (var micro = 0; micro < Options.AccumulationSteps; micro++)
        {
            Batches.FillTraining(Data.Train, Options.Seed, step, micro, Options.BatchSize, Model.Config.SequenceLength, _tokens, _targets, Rank * Model.BatchSize);
            Model.SetBatch(_tokens, _targets);
            _reduction?.MicroBatch = micro;
            var start = Stopwatch.GetTimestamp();
            if (_graphs is not null && CompletedSteps > 0)
            {
                _stepGraph ??= _graphs.Capture(_forwardBackward);
                _stepGraph.Replay();
            }
            else
            {
                ForwardBackward();
            }
            issue += Stopwatch.GetTimestamp() - start;
            // A collective a dead peer never completes is reported here rather than waited for in the driver.
            _collectives?.WaitForDevice();
            lossSum += Model.SumLosses();
        }
        if (_collectives is not null) lossSum = ReduceGradientsAndLoss(lossSum);
        var loss = lossSum / TokensPerStep;
        var learningRate = Options.LearningRateAt(step);
        var (norm, applied) = Optimizer.Step(learningRate, double.IsFinite(loss));
        CompletedSteps = step;
        ConsecutiveBadSteps = applied ? 0 : ConsecutiveBadSteps + 1;
        var result = new StepResult(step, loss, learningRate, norm, !applied, TokensPerStep, Stopwatch.GetElapsedTime(started).TotalSeconds, (double)issue / Stopwatch.Frequency);
        if (ConsecutiveBadSteps >= Options.MaxConsecutiveBadSteps)
            throw new TrainingDivergedException(
                $"Stopped at step {step}: the loss or the gradients were NaN or infinite in {ConsecutiveBadSteps} consecutive steps (last loss {loss}, gradient norm {norm}); " +
                "each was skipped without an update. Try a lower learning rate, a longer warm-up, or the last good checkpoint.");
        return result;
    }

    /// <summary>
    /// Mean token loss over the first <see cref="TrainingOptions.EvalBatches"/> batches of validation windows; with several
    /// ranks each evaluates its rows of every batch, and the sums are added up.
    /// </summary>
    public double EvaluateValidation()
    {
        var windows = Options.EvalBatches * Options.BatchSize;
        Span<double> sums = stackalloc double[2];
        (sums[0], sums[1]) = Evaluation.LossSum(Model, Data.Validation, windows, Options.BatchSize, Rank * Model.BatchSize);
        _collectives?.AllReduceSum(sums);
        return sums[0] / sums[1];
    }

    /// <summary>Sums the gradients over the ranks (by the ZeRO stage) and returns the step's loss sum over every rank.</summary>
    private double ReduceGradientsAndLoss(double lossSum)
    {
        _reduction!.Finish();
        // As after each micro-batch: a reduction a dead peer never completes is reported here, not waited for in the
        // driver by the optimizer's read of the gradient norm (which waits for the device anyway).
        _collectives!.WaitForDevice();
        Span<double> sum = [lossSum];
        _collectives!.AllReduceSum(sum);
        return sum[0];
    }

    private void ForwardBackward()
    {
        Model.Forward(withLoss: true, lossGradientScale: _lossGradientScale);
        Model.Backward();
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _stepGraph?.Dispose();
        Optimizer.Dispose();
        Model.Dispose();
    }
}

/// <summary>Loss over a token sequence read as consecutive non-overlapping windows of the model's sequence length.</summary>
public static class Evaluation
{
    /// <summary>
    /// Mean token loss over the windows of <paramref name="tokens"/> (at most <paramref name="maxWindows"/>): each
    /// window of S tokens predicts its positions 1..S−1 from the ones before; a last partial window is dropped.
    /// Returns the mean loss and the number of predicted tokens.
    /// </summary>
    public static (double MeanLoss, long Tokens) MeanLoss(KeelModel model, int[] tokens, int maxWindows = int.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(model);
        var (sum, counted) = LossSum(model, tokens, maxWindows, model.BatchSize, 0);
        return (sum / counted, (long)counted);
    }

    /// <summary>
    /// The summed token loss and the number of predicted tokens over this rank's rows of the windows of
    /// <paramref name="tokens"/> (at most <paramref name="maxWindows"/>), taken in batches of <paramref name="globalBatch"/>
    /// windows of which this rank evaluates <see cref="KeelModel.BatchSize"/> from row <paramref name="firstRow"/>.
    /// </summary>
    internal static (double Sum, double Tokens) LossSum(KeelModel model, int[] tokens, int maxWindows, int globalBatch, int firstRow)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        var s = model.Config.SequenceLength;
        var windows = Math.Min(Batches.WindowCount(tokens.Length, s), maxWindows);
        if (windows == 0)
            throw new ArgumentException($"SequenceLength ({s}) is longer than the {tokens.Length} tokens to evaluate.", "SequenceLength");
        var ids = new int[model.Tokens];
        var targets = new int[model.Tokens];
        double sum = 0;
        long counted = 0;
        for (var first = 0; first < windows; first += globalBatch)
        {
            counted += Batches.FillEvaluation(tokens, first + firstRow, windows, model.BatchSize, s, ids, targets);
            model.SetBatch(ids, targets);
            model.Forward(withLoss: true);
            sum += model.SumLosses();
        }
        return (sum, counted);
    }
}
