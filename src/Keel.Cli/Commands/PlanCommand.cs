using System.Diagnostics;
using System.Globalization;
using CommandLine;
using Keel.Cli.Output;
using Keel.Native.Devices;
using Keel.Native.Distributed;
using Keel.Native.Memory;
using Keel.Native.Model;
using Keel.Native.Training;

namespace Keel.Cli.Commands;

[Verb("plan", HelpText = "The memory a training step needs, under each activation policy, for a model, a batch and a budget: parameters, gradients, optimizer state, activations (arena and lower bound), workspaces, the peak, the recompute overhead in extra FLOPs, which policies fit, and what auto would choose (or the smallest budget, and the deepest model, that would fit). --device auto or cuda plans for a GPU (bf16 operands; without --budget, the budget is the GPU's memory when one is present), cpu for fp32 host memory. Needs no GPU; any depth takes well under a second.")]
internal sealed class PlanOptions : ModelOptions
{
    [Option("tokenizer", Default = TokenizerKind.Byte, HelpText = "Sets the vocabulary as train would: Byte (256) or Gpt2 (50257).")]
    public TokenizerKind Tokenizer { get; init; } = TokenizerKind.Byte;

    [Option("vocab", HelpText = "Vocabulary size, overriding --tokenizer's.")]
    public int? VocabularySize { get; init; }

    [Option("policies", HelpText = "More policies to show, comma-separated (every:K, binomial:S, ...), beside store, selective, every:1, every:√L, binomial:2 and binomial:log2(L)+1.")]
    public string? Policies { get; init; }

    [Option("ranks", Default = 1, HelpText = "Data-parallel ranks (mpirun -np N): the plan is one rank's, with its share of --batch (the global batch) and its shards at --zero.")]
    public int Ranks { get; init; } = 1;

    [Option("zero", HelpText = nameof(HelpTexts.ZeroStage), ResourceType = typeof(HelpTexts))]
    public int? ZeroStage { get; init; }
}

/// <summary><c>keel plan</c>: every policy's memory and recompute for a model, and what fits the budget.</summary>
internal static class PlanCommand
{
    public static int Run(PlanOptions options, TextWriter output)
    {
        var watch = Stopwatch.StartNew();
        var config = options.ModelConfig(options.VocabularySize ?? TextTokenizers.VocabularySize(options.Tokenizer));
        var globalBatch = options.BatchSize ?? new TrainingOptions().BatchSize;
        if (globalBatch <= 0) throw new ArgumentOutOfRangeException(nameof(options.BatchSize), globalBatch, "The batch must be positive.");
        // TrainingOptions checks the stage, so the error names ZeroStage and reaches the user as --zero.
        var sharding = new Sharding(options.Ranks, new TrainingOptions { ZeroStage = options.ZeroStage ?? 0 }.ZeroStage);
        var batch = sharding.LocalBatch(globalBatch);
        var (target, precision, budget, budgetSource) = Target(options);
        var extra = (options.Policies ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(text => ModelOptions.Parsed(text, MemoryPolicy.Parse, nameof(options.Policies))).ToList();
        if (extra.Any(p => p.Kind == MemoryPolicyKind.Auto)) throw new ArgumentException("auto is always shown when there is a budget; list the others.", nameof(options.Policies));

        var inventory = new MemoryInventory(config, precision, batch, target, sharding);
        var layers = config.SubLayers;
        var sqrt = Math.Max(1, (int)Math.Round(Math.Sqrt(layers)));
        var log = (int)Math.Ceiling(Math.Log2(layers)) + 1;
        MemoryPolicy[] standard = [MemoryPolicy.Store, MemoryPolicy.Selective, MemoryPolicy.Every(1), MemoryPolicy.Every(sqrt), MemoryPolicy.Binomial(2), MemoryPolicy.Binomial(log)];
        var policies = standard.Concat(extra).Distinct().Where(p => p.Kind != MemoryPolicyKind.Every || p.Parameter < layers).ToList();

        MemoryPlan? auto = null;
        MemoryBudgetException? none = null;
        if (budget is { } b)
        {
            try
            {
                auto = MemoryPlanner.Auto(inventory, b);
                if (!policies.Contains(auto.Policy)) policies.Add(auto.Policy);
            }
            catch (MemoryBudgetException e)
            {
                none = e;
            }
        }
        var plans = policies.Select(p => auto is not null && p == auto.Policy ? auto : MemoryPlanner.Plan(inventory, p)).ToList();

        output.WriteLine(Invariant($"Model      {config.Architecture}, L = {layers} sub-layers (alpha {config.ResidualScale:0.###}), hidden {config.Hidden}, heads {config.Heads}/{config.KvHeads}, FFN {config.FeedForward} {config.FeedForwardSize}, {config.Norm}Norm, vocabulary {config.VocabularySize}{(config.PaddedVocabularySize != config.VocabularySize ? $" (embedding and head rows padded to {config.PaddedVocabularySize})" : "")}, {inventory.Layout.ParameterCount / 1e9:0.000} B parameters"));
        output.WriteLine(sharding.Ranks == 1
            ? Invariant($"Step       batch {batch} × sequence {config.SequenceLength} = {inventory.Tokens:N0} tokens, {inventory.StepFlops / 1e12:0.###} TFLOP without recompute")
            : Invariant($"Step       per rank: batch {batch} of {globalBatch} × sequence {config.SequenceLength} = {inventory.Tokens:N0} tokens, {inventory.StepFlops / 1e12:0.###} TFLOP without recompute"));
        if (sharding.Ranks > 1) output.WriteLine(Invariant($"Ranks      {sharding.Ranks}, ZeRO {sharding.Stage}: every figure below is one rank's"));
        output.WriteLine(Invariant($"Target     {target.Kind}: {precision.Master} master state and residual stream, {precision.Operand} GEMM operands; budget {(budget is { } bb ? $"{ByteSize.Format(bb)} ({ByteSize.FormatGiB(bb)}, {budgetSource})" : "none (give --budget, or run where a GPU is)")}"));
        output.WriteLine();
        output.WriteLine("Every policy needs:");
        var fixedTable = new TextTable("", "bytes", "").AlignRight("bytes");
        var shard = sharding.Ranks > 1 ? Invariant($", 1/{sharding.Ranks}") : "";
        fixedTable.Add("parameters", ByteSize.Format(inventory.ParameterBytes), $"{precision.Master} master weights{(sharding.ShardsOptimizer ? " (all: the model reads them; this rank updates its 1/" + sharding.Ranks + ")" : "")}");
        fixedTable.Add("gradients", ByteSize.Format(inventory.GradientBytes),
                       inventory.Buckets is { } buckets ? Invariant($"{precision.Master}, resident (embedding, norms, LM head) and {buckets.Slots} bucket slots of the largest sub-layer") : precision.Master.ToString());
        if (inventory.GradientShardBytes > 0) fixedTable.Add("gradient shard", ByteSize.Format(inventory.GradientShardBytes), $"the reduced gradients of this rank's shard{shard}");
        fixedTable.Add("optimizer state", ByteSize.Format(inventory.OptimizerStateBytes), $"AdamW first and second moments{(sharding.ShardsOptimizer ? shard : "")}");
        if (inventory.OperandCopyBytes > 0) fixedTable.Add("weight copy", ByteSize.Format(inventory.OperandCopyBytes), $"{precision.Operand} parameters the GEMMs read");
        foreach (var w in inventory.Workspaces) fixedTable.Add("workspace", ByteSize.Format(w.Bytes), w.Name);
        if (target.ContextAllowanceBytes > 0) fixedTable.Add("context", ByteSize.Format(target.ContextAllowanceBytes), "CUDA context, modules and library state (a stated allowance)");
        fixedTable.Write(output);
        output.WriteLine();

        var table = new TextTable("policy", "activations", "lower bound", "arena/bound", "peak", "recompute", "forwards", "fits").AlignRight("activations", "lower bound", "arena/bound", "peak", "recompute", "forwards");
        foreach (var plan in plans)
        {
            table.Add(plan.Policy.ToString() + (auto is not null && plan == auto ? " (auto)" : ""),
                      ByteSize.Format(plan.ArenaBytes), ByteSize.Format(plan.ArenaLowerBound), Invariant($"{plan.ArenaRatio:0.000}"),
                      ByteSize.Format(plan.TotalBytes), Invariant($"+{100 * plan.RecomputeFraction:0.0#}%"),
                      Invariant($"{plan.SubLayerForwards}/{layers}"),
                      budget is { } limit ? plan.Fits(limit) ? "yes" : "no" : "");
        }
        table.Write(output);
        output.WriteLine("activations: the arena every activation, the batch, the logits and the scratch live in; lower bound: the most bytes live at one op;");
        output.WriteLine("peak: everything at once (static state, arena, workspaces, context); recompute: extra forward FLOPs over the step's model FLOPs;");
        output.WriteLine("forwards: sub-layer forwards run per step over those of a step that keeps everything.");
        output.WriteLine();

        if (auto is not null)
        {
            output.WriteLine(Invariant($"auto: {auto.Policy}, peak {ByteSize.Format(auto.TotalBytes)} of {ByteSize.Format(budget!.Value)}, recompute +{100 * auto.RecomputeFraction:0.0}% FLOPs ({auto.SubLayerForwards - layers} extra sub-layer forwards)."));
        }
        else if (none is not null)
        {
            output.WriteLine("auto: " + none.Message);
            var depth = MemoryPlanner.LargestDepth(config, precision, batch, target, budget!.Value, sharding);
            output.WriteLine(depth > 0
                ? Invariant($"At this width, batch and precision, at most {depth} sub-layers fit {ByteSize.Format(budget.Value)} (auto).")
                : "Not even two sub-layers of this width fit the budget.");
        }
        if (sharding.Ranks > 1) WriteStages(output, config, precision, batch, target, sharding, budget);
        output.WriteLine(Invariant($"Planned in {watch.Elapsed.TotalSeconds:0.00} s."));
        return 0;
    }

    /// <summary>Each ZeRO stage on these ranks: one rank's static state, and auto's plan for the budget (what makes the model fit).</summary>
    private static void WriteStages(TextWriter output, ModelConfig config, ModelPrecision precision, int batch, MemoryTarget target, Sharding sharding, long? budget)
    {
        output.WriteLine();
        output.WriteLine(Invariant($"Per rank on {sharding.Ranks} ranks, by ZeRO stage{(budget is { } b ? $" (budget {ByteSize.Format(b)})" : "")}:"));
        var table = new TextTable("zero", "parameters", "gradients", "optimizer", "static", "auto", "peak", "recompute").AlignRight("parameters", "gradients", "optimizer", "static", "peak", "recompute");
        for (var stage = 0; stage <= 2; stage++)
        {
            var inventory = new MemoryInventory(config, precision, batch, target, new Sharding(sharding.Ranks, stage));
            var plan = budget is { } limit ? MemoryPlanner.TryAuto(inventory, limit) : null;
            table.Add(stage.ToString(CultureInfo.InvariantCulture) + (stage == sharding.Stage ? " (this plan)" : ""),
                      ByteSize.Format(inventory.ParameterBytes + inventory.OperandCopyBytes), ByteSize.Format(inventory.GradientBytes + inventory.GradientShardBytes),
                      ByteSize.Format(inventory.OptimizerStateBytes), ByteSize.Format(inventory.StaticBytes),
                      plan?.Policy.ToString() ?? (budget is null ? "" : "does not fit"), plan is null ? "" : ByteSize.Format(plan.TotalBytes),
                      plan is null ? "" : Invariant($"+{100 * plan.RecomputeFraction:0.0}%"));
        }
        table.Write(output);
        output.WriteLine("parameters: master weights and the operand copy; gradients: as the backward writes them and the rank's reduced shard; auto: the least recompute that fits.");
    }

    /// <summary>The device kind planned for, its precision, and the budget with where it came from.</summary>
    private static (MemoryTarget Target, ModelPrecision Precision, long? Budget, string Source) Target(PlanOptions options)
    {
        var budget = options.Budget();
        var source = "--budget";
        var kind = options.Device switch
        {
            DeviceChoice.Cpu => DeviceKind.Cpu,
            DeviceChoice.Emulated => DeviceKind.Emulated,
            _ => DeviceKind.Cuda,
        };
        var target = MemoryTarget.For(kind);
        if (budget is null && kind == DeviceKind.Cuda && Gpus.WhyNone() is null)
        {
            using var device = TrainingDevices.Open(DeviceChoice.Cuda);
            budget = TrainingDevices.MemoryBytes(device);
            source = device.Name;
            target = MemoryTarget.For(device);
        }
        var precision = kind == DeviceKind.Cpu ? ModelPrecision.Float32 : ModelPrecision.Mixed;
        return (target, precision, budget, source);
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
