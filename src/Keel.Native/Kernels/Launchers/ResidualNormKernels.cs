using System.Numerics;
using Keel.Native.Devices;
using Keel.Native.Numerics;
using Keel.Native.Reference;

namespace Keel.Native.Kernels.Launchers;

/// <summary>
/// Launches <c>kernels/residual_norm.cu</c>: the fused residual norm (s = alpha·x + f, y = N_out(s), z = N_in(y))
/// forward, its backward, and the fixed-order finalize of the gain and bias gradients. There is one
/// specialization per norm kind, f element type and pair of norm flags (<see cref="Specs"/>), each compiled the
/// first time it runs; the threads per row follow the hidden size at run time.
/// <para>
/// Element types: x, y, dx, the statistics, gains, biases and their gradients Float32; f and df Float32 or
/// BFloat16 (df has f's type); z and dz BFloat16. Every tensor 16-byte aligned, hidden a multiple of 8 from
/// <see cref="MinHidden"/> to <see cref="MaxHidden"/>.
/// </para>
/// The backward's per-block gradient sums live in the device's <see cref="KernelWorkspace"/>
/// (<see cref="KernelScratch.ResidualNormPartials"/>, sized by <see cref="BackwardPartialsElements"/>).
/// </summary>
internal sealed class ResidualNormKernels
{
    /// <summary>The smallest hidden size (one 8-element chunk per row).</summary>
    public const int MinHidden = 8;

    /// <summary>The largest hidden size: a backward row group of 512 threads holding 16 elements each.</summary>
    public const int MaxHidden = 8192;

    private const int ChunkElements = 8, ForwardChunks = 4, BackwardChunks = 2;
    private const int BlockThreads = 256, FinalizeThreads = 256, FinalizeColumns = 32;
    // Backward blocks resident per SM at once: the kernel holds up to 128 registers per thread (its launch
    // bound), so two blocks of 256 threads (or one of 512) fit. More would only queue and enlarge the partials.
    private const int BackwardThreadsPerMultiprocessor = 512;

    private readonly KernelWorkspace _workspace;
    private readonly Lazy<Functions>[] _functions;
    private readonly int _multiprocessors;

    /// <summary>
    /// Prepares the launches on <paramref name="runtime"/>, with the backward's scratch in <paramref name="workspace"/>;
    /// each specialization is compiled when first used.
    /// </summary>
    public ResidualNormKernels(IKernelRuntime runtime, KernelWorkspace workspace)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        ArgumentNullException.ThrowIfNull(workspace);
        _workspace = workspace;
        _functions = new Lazy<Functions>[SpecTable.Length];
        for (var i = 0; i < SpecTable.Length; i++)
        {
            var spec = SpecTable[i];
            _functions[i] = new(() => new Functions(runtime, spec));
        }
        _multiprocessors = runtime.MultiprocessorCount;
    }

    // Index: f type (2) x kind (2) x OutputNorm (2) x InputNorm (2). Without either norm the kind does not
    // matter, and the RMSNorm specialization serves both kinds.
    private static readonly KernelSpec[] SpecTable = BuildSpecTable();

    /// <summary>Every specialization these launchers may run, for the compile tests and <c>keel compile</c>.</summary>
    public static IReadOnlyList<KernelSpec> Specs { get; } = SpecTable.Distinct().ToList();

    /// <summary>
    /// The forward pass (see <see cref="IDevice.ResidualNormForward"/>): y = N_out(alpha·x + f) or the sum itself,
    /// z = N_in(y) in BFloat16 or, without InputNorm, y rounded to BFloat16 when z is given; saves the statistics.
    /// </summary>
    /// <exception cref="ArgumentException">A tensor's type, size or alignment does not fit the options and x.</exception>
    public void Forward(ResidualNormOptions options, Tensor x, Tensor f, NormWeights outNorm, NormWeights inNorm,
                        Tensor y, Tensor z, NormStatistics statistics)
    {
        ArgumentNullException.ThrowIfNull(options);
        var (rows, hidden) = RowsAndHidden(x);
        CheckBranch(f, x.Length);
        CheckStream(y, x.Length);
        if (options.InputNorm || !z.IsEmpty) CheckOperand(z, x.Length, options.InputNorm ? "with InputNorm" : null);
        CheckWeights(outNorm, options.OutputNorm, options.Kind == NormKind.Layer, hidden, "OutputNorm is off");
        CheckWeights(inNorm, options.InputNorm, options.Kind == NormKind.Layer, hidden, "InputNorm is off");
        CheckStatistics(statistics, options, rows);
        if (rows == 0) return;

        var kernel = _functions[SpecIndex(options, f.IsEmpty ? DType.BFloat16 : f.DType)].Value.Forward;
        var threadsPerRow = ThreadsPerRow(hidden, ForwardChunks);
        var (groups, blockThreads) = Block(threadsPerRow);
        kernel.Launch(LaunchShapes.Blocks(((long)rows + groups - 1) / groups, blockThreads),
        [
            x, f, outNorm.Gain, outNorm.Bias, inNorm.Gain, inNorm.Bias, y, z,
            statistics.MeanOut, statistics.RstdOut, statistics.MeanIn, statistics.RstdIn,
            rows, hidden, threadsPerRow, options.Alpha, options.Epsilon,
        ], ForwardCost(options, rows, hidden, f, z));
    }

    /// <summary>
    /// The backward pass (see <see cref="IDevice.ResidualNormBackward"/>): overwrites dx and df, adds the gain and
    /// bias gradients.
    /// </summary>
    /// <exception cref="ArgumentException">A tensor's type, size or alignment does not fit the options and x.</exception>
    public void Backward(ResidualNormOptions options, Tensor x, Tensor f, Tensor y, NormWeights outNorm, NormWeights inNorm,
                         NormStatistics statistics, Tensor dy, Tensor dz, Tensor dx, Tensor df,
                         NormWeights outNormGradients, NormWeights inNormGradients)
    {
        ArgumentNullException.ThrowIfNull(options);
        var (rows, hidden) = RowsAndHidden(x);
        bool layer = options.Kind == NormKind.Layer;
        CheckBranch(f, x.Length);
        CheckStream(y, x.Length);
        CheckWeights(new NormWeights(outNorm.Gain, default), options.OutputNorm, layer: false, hidden, "OutputNorm is off", nameof(outNorm));
        CheckWeights(new NormWeights(inNorm.Gain, default), options.InputNorm, layer: false, hidden, "InputNorm is off", nameof(inNorm));
        CheckStatistics(statistics, options, rows);
        if (!dy.IsEmpty) CheckStream(dy, x.Length);
        if (options.InputNorm || !dz.IsEmpty) CheckOperand(dz, x.Length, options.InputNorm ? "with InputNorm" : null);
        CheckStream(dx, x.Length);
        if (f.IsEmpty != df.IsEmpty)
            throw new ArgumentException(f.IsEmpty ? "df must be empty when f is." : "df is required when f is given.", nameof(df));
        if (!f.IsEmpty)
        {
            Require.DType(df, f.DType);
            Require.Length(df, x.Length);
            Require.Aligned(df, 16);
        }
        CheckWeights(outNormGradients, options.OutputNorm, layer, hidden, "OutputNorm is off");
        CheckWeights(inNormGradients, options.InputNorm, layer, hidden, "InputNorm is off");
        if (rows == 0) return;

        var functions = _functions[SpecIndex(options, f.IsEmpty ? DType.BFloat16 : f.DType)].Value;
        var threadsPerRow = ThreadsPerRow(hidden, BackwardChunks);
        var (_, blockThreads) = Block(threadsPerRow);
        var blocks = BackwardBlocks(_multiprocessors, rows, hidden);
        var parameters = ParameterCount(options);
        var scratch = _workspace.Get(KernelScratch.ResidualNormPartials, DType.Float32, (long)blocks * parameters * hidden);

        functions.Backward.Launch(LaunchShapes.Blocks(blocks, blockThreads),
        [
            x, f, y, outNorm.Gain, inNorm.Gain, statistics.MeanOut, statistics.RstdOut, statistics.MeanIn, statistics.RstdIn,
            dy, dz, dx, df, scratch, rows, hidden, threadsPerRow, options.Alpha,
        ], BackwardCost(options, rows, hidden, f, dy, dz, (long)blocks * parameters * hidden));
        if (parameters == 0) return;

        // The gradients in partials order: N_out's gain (and bias), then N_in's; the unused ones null.
        Span<Tensor> gradients = [default, default, default, default];
        var count = 0;
        if (options.OutputNorm)
        {
            gradients[count++] = outNormGradients.Gain;
            if (layer) gradients[count++] = outNormGradients.Bias;
        }
        if (options.InputNorm)
        {
            gradients[count++] = inNormGradients.Gain;
            if (layer) gradients[count++] = inNormGradients.Bias;
        }
        var columnBlocks = ((long)parameters * hidden + FinalizeColumns - 1) / FinalizeColumns;
        double partialCount = (double)blocks * parameters * hidden;
        functions.Finalize.Launch(LaunchShapes.Blocks(columnBlocks, FinalizeThreads),
                                  [scratch, blocks, hidden, gradients[0], gradients[1], gradients[2], gradients[3]],
                                  new KernelCost(4 * partialCount + 8.0 * parameters * hidden, partialCount));
    }

    /// <summary>
    /// Float32 elements of <see cref="KernelScratch.ResidualNormPartials"/> a backward over <paramref name="rows"/> rows of
    /// <paramref name="hidden"/> uses on a device of <paramref name="multiprocessors"/> SMs (a memory planner counts it).
    /// </summary>
    public static long BackwardPartialsElements(ResidualNormOptions options, int multiprocessors, int rows, int hidden)
    {
        ArgumentNullException.ThrowIfNull(options);
        return rows == 0 ? 0 : (long)BackwardBlocks(multiprocessors, rows, hidden) * ParameterCount(options) * hidden;
    }

    /// <summary>Backward blocks: one per row group, at most as many as are resident on the device at once.</summary>
    private static int BackwardBlocks(int multiprocessors, int rows, int hidden)
    {
        var (groups, blockThreads) = Block(ThreadsPerRow(hidden, BackwardChunks));
        var residentBlocks = (long)multiprocessors * Math.Max(1, BackwardThreadsPerMultiprocessor / blockThreads);
        return (int)Math.Min(((long)rows + groups - 1) / groups, residentBlocks);
    }

    /// <summary>
    /// Threads per row: the smallest power of two up to 32, or multiple of 32 beyond, whose threads cover the
    /// row's 8-element chunks with at most <paramref name="chunksPerThread"/> each.
    /// </summary>
    internal static int ThreadsPerRow(int hidden, int chunksPerThread)
    {
        var needed = (hidden / ChunkElements + chunksPerThread - 1) / chunksPerThread;
        return needed <= 32 ? (int)BitOperations.RoundUpToPowerOf2((uint)needed) : (needed + 31) / 32 * 32;
    }

    /// <summary>Row groups per block and threads per block: as many whole groups as fit in 256 threads, at least one.</summary>
    private static (int Groups, int Threads) Block(int threadsPerRow)
    {
        var groups = Math.Max(1, BlockThreads / threadsPerRow);
        return (groups, groups * threadsPerRow);
    }

    /// <summary>
    /// FLOPs of a forward over <paramref name="rows"/> rows of <paramref name="hidden"/>, as kernels/residual_norm.cu's
    /// header counts them per element: 2 for s = alpha·x + f, then 4 per RMSNorm (square and sum, scale, gain) or 8 per
    /// LayerNorm (sum, subtract, square and sum, subtract, scale, gain, bias). The per-row square roots and divisions are
    /// not counted. A memory planner counts what recomputing a norm costs with it.
    /// </summary>
    public static double ForwardFlops(ResidualNormOptions options, long rows, long hidden)
    {
        ArgumentNullException.ThrowIfNull(options);
        var perNorm = options.Kind == NormKind.Layer ? 8 : 4;
        return (double)rows * hidden * (2 + perNorm * Norms(options));
    }

    /// <summary>
    /// FLOPs of a backward, as kernels/residual_norm.cu's header counts them per element: 1 for dx = alpha·ds; N_in's 10
    /// (RMSNorm) or 14 (LayerNorm); N_out's 12 or 16 (2 more, recomputing s); 1 for adding dz into the gradient without
    /// N_in. The finalize's additions are its own launch's.
    /// </summary>
    private static double BackwardFlops(ResidualNormOptions options, long rows, long hidden, bool addsDz)
    {
        var layer = options.Kind == NormKind.Layer;
        var perElement = 1 + (options.InputNorm ? (layer ? 14 : 10) : addsDz ? 1 : 0) + (options.OutputNorm ? (layer ? 16 : 12) : 0);
        return (double)rows * hidden * perElement;
    }

    /// <summary>The forward's bytes (x, f, y, z per element; gains and biases; saved statistics) and FLOPs.</summary>
    private static KernelCost ForwardCost(ResidualNormOptions options, long rows, long hidden, Tensor f, Tensor z)
    {
        var perElement = 4 + (f.IsEmpty ? 0 : f.DType.SizeOf()) + 4 + (z.IsEmpty ? 0 : z.DType.SizeOf());
        var statistics = Norms(options) * (options.Kind == NormKind.Layer ? 2 : 1);
        return new KernelCost((double)rows * hidden * perElement + 4.0 * statistics * (hidden + rows), ForwardFlops(options, rows, hidden));
    }

    /// <summary>
    /// The backward's bytes (dy, dz; y with N_in; x and f with N_out; dx and df; gains and statistics; the
    /// partials it writes) and FLOPs.
    /// </summary>
    private static KernelCost BackwardCost(ResidualNormOptions options, long rows, long hidden, Tensor f, Tensor dy, Tensor dz, long partials)
    {
        var norms = Norms(options);
        var fBytes = f.IsEmpty ? 0 : f.DType.SizeOf();
        var perElement = (dy.IsEmpty ? 0 : 4) + (dz.IsEmpty ? 0 : dz.DType.SizeOf()) + (options.InputNorm ? 4 : 0)
                         + (options.OutputNorm ? 4 + fBytes : 0) + 4 + fBytes;
        var statistics = norms * (options.Kind == NormKind.Layer ? 2 : 1);
        return new KernelCost((double)rows * hidden * perElement + 4.0 * (norms * hidden + statistics * rows + partials),
                              BackwardFlops(options, rows, hidden, addsDz: !dz.IsEmpty));
    }

    /// <summary>How many of the two norms run.</summary>
    private static int Norms(ResidualNormOptions options) => (options.OutputNorm ? 1 : 0) + (options.InputNorm ? 1 : 0);

    /// <summary>How many gain and bias gradient vectors the backward produces.</summary>
    private static int ParameterCount(ResidualNormOptions options)
    {
        var perNorm = options.Kind == NormKind.Layer ? 2 : 1;
        return (options.OutputNorm ? perNorm : 0) + (options.InputNorm ? perNorm : 0);
    }

    // ------------------------------------------------------------------------------------------ specializations

    private static KernelSpec[] BuildSpecTable()
    {
        var table = new KernelSpec[16];
        foreach (var fType in new[] { DType.Float32, DType.BFloat16 })
        foreach (var kind in new[] { NormKind.Rms, NormKind.Layer })
        foreach (var outputNorm in new[] { false, true })
        foreach (var inputNorm in new[] { false, true })
        {
            var effectiveKind = outputNorm || inputNorm ? kind : NormKind.Rms;
            table[Index(fType, kind, outputNorm, inputNorm)] = new KernelSpec("residual_norm.cu",
            [
                new("NORM_KIND", effectiveKind == NormKind.Layer ? "1" : "0"),
                new("F_TYPE", fType == DType.BFloat16 ? "bf16" : "float"),
                new("OUT_NORM", outputNorm ? "1" : "0"),
                new("IN_NORM", inputNorm ? "1" : "0"),
            ]);
        }
        return table;
    }

    private static int Index(DType fType, NormKind kind, bool outputNorm, bool inputNorm) =>
        (fType == DType.BFloat16 ? 8 : 0) + (kind == NormKind.Layer ? 4 : 0) + (outputNorm ? 2 : 0) + (inputNorm ? 1 : 0);

    private static int SpecIndex(ResidualNormOptions options, DType fType)
    {
        if (fType is not (DType.Float32 or DType.BFloat16))
            throw new ArgumentException($"f is {fType}; the kernel takes Float32 or BFloat16.", "f");
        return Index(fType, options.Kind, options.OutputNorm, options.InputNorm);
    }

    private sealed class Functions(IKernelRuntime runtime, KernelSpec spec)
    {
        public KernelFunction Forward { get; } = runtime.Load(spec, "keel_residual_norm_forward");
        public KernelFunction Backward { get; } = runtime.Load(spec, "keel_residual_norm_backward");
        public KernelFunction Finalize { get; } = runtime.Load(spec, "keel_residual_norm_gain_finalize");
    }

    // ------------------------------------------------------------------------------------------ checks

    private static (int Rows, int Hidden) RowsAndHidden(Tensor x)
    {
        if (x.Shape.Rank < 2) throw new ArgumentException($"x has shape {x.Shape}; [rows, hidden] expected.", nameof(x));
        Require.DType(x, DType.Float32);
        Require.Aligned(x, 16);
        var hidden = x.Shape.Last;
        if (hidden % ChunkElements != 0 || hidden < MinHidden || hidden > MaxHidden)
            throw new ArgumentException($"x has hidden size {hidden}; the kernel takes multiples of {ChunkElements} from {MinHidden} to {MaxHidden}.", nameof(x));
        if (x.Shape.Rows > int.MaxValue) throw new ArgumentException($"x has {x.Shape.Rows} rows; at most {int.MaxValue}.", nameof(x));
        return ((int)x.Shape.Rows, (int)hidden);
    }

    private static void CheckBranch(Tensor f, long length)
    {
        if (f.IsEmpty) return;
        if (f.DType is not (DType.Float32 or DType.BFloat16))
            throw new ArgumentException($"f is {f.DType}; the kernel takes Float32 or BFloat16.", nameof(f));
        Require.Length(f, length);
        Require.Aligned(f, 16);
    }

    private static void CheckStream(Tensor tensor, long length, [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(tensor))] string? name = null)
    {
        Require.DType(tensor, DType.Float32, name);
        Require.Length(tensor, length, name);
        Require.Aligned(tensor, 16, name);
    }

    private static void CheckOperand(Tensor tensor, long length, string? requiredWhy, [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(tensor))] string? name = null)
    {
        if (tensor.IsEmpty && requiredWhy is not null) throw new ArgumentException($"{name} is required {requiredWhy}.", name);
        if (tensor.DType != DType.BFloat16)
            throw new ArgumentException($"{name} is {tensor.DType}; the kernel devices keep it in BFloat16 (the next GEMM's operand).", name);
        Require.Length(tensor, length, name);
        Require.Aligned(tensor, 16, name);
    }

    /// <summary>
    /// A gain (and, for LayerNorm, a bias) of [hidden] Float32 exactly when the norm runs; both empty otherwise, as
    /// <paramref name="off"/> says ("OutputNorm is off": a constant, so that a call allocates nothing).
    /// </summary>
    private static void CheckWeights(NormWeights weights, bool runs, bool layer, int hidden, string off,
                                     [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(weights))] string? name = null)
    {
        CheckVector(weights.Gain, runs, hidden, off, name!, "Gain", aligned: true);
        CheckVector(weights.Bias, runs && layer, hidden, runs ? "RMSNorm has no bias" : off, name!, "Bias", aligned: true);
    }

    private static void CheckStatistics(NormStatistics statistics, ResidualNormOptions options, int rows)
    {
        bool layer = options.Kind == NormKind.Layer;
        CheckVector(statistics.MeanOut, options.OutputNorm && layer, rows, options.OutputNorm ? "RMSNorm saves no mean" : "OutputNorm is off", nameof(statistics), "MeanOut", aligned: false);
        CheckVector(statistics.RstdOut, options.OutputNorm, rows, "OutputNorm is off", nameof(statistics), "RstdOut", aligned: false);
        CheckVector(statistics.MeanIn, options.InputNorm && layer, rows, options.InputNorm ? "RMSNorm saves no mean" : "InputNorm is off", nameof(statistics), "MeanIn", aligned: false);
        CheckVector(statistics.RstdIn, options.InputNorm, rows, "InputNorm is off", nameof(statistics), "RstdIn", aligned: false);
    }

    /// <summary>
    /// A Float32 vector of <paramref name="length"/> elements (16-byte aligned when read by vectors) when
    /// <paramref name="present"/>, else empty (<paramref name="absentWhy"/>).
    /// </summary>
    private static void CheckVector(Tensor tensor, bool present, long length, string absentWhy, string name, string member, bool aligned)
    {
        if (!present)
        {
            if (!tensor.IsEmpty) throw new ArgumentException($"{name}.{member} must be empty: {absentWhy}.", name);
            return;
        }
        if (tensor.IsEmpty) throw new ArgumentException($"{name}.{member} is required: Float32 [{length}].", name);
        if (tensor.DType != DType.Float32 || tensor.Length != length)
            throw new ArgumentException($"{name}.{member} is {tensor.DType}{tensor.Shape}; Float32 [{length}] expected.", name);
        if (aligned && !tensor.IsAligned(16))
            throw new ArgumentException($"{name}.{member} at 0x{tensor.Address:x} is not 16-byte aligned, as the kernel's vector accesses need.", name);
    }
}
