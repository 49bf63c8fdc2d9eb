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
/// Owns the backward's scratch (the per-block gradient sums), allocated on the device on first use and grown
/// when a larger shape comes by, so steady-state calls allocate nothing.
/// </summary>
internal sealed unsafe class ResidualNormKernels : IDisposable
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

    private readonly IDevice _device;
    private readonly Lazy<Functions>[] _functions;
    private readonly int _multiprocessors;
    private DeviceBuffer? _partials;

    /// <summary>
    /// Prepares the launches on <paramref name="runtime"/>, with scratch memory from <paramref name="device"/> (the
    /// device the runtime runs); each specialization is compiled when first used.
    /// </summary>
    public ResidualNormKernels(IKernelRuntime runtime, IDevice device)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        ArgumentNullException.ThrowIfNull(device);
        _device = device;
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
        CheckWeights(outNorm, options.OutputNorm, options.Kind == NormKind.Layer, hidden, "OutputNorm");
        CheckWeights(inNorm, options.InputNorm, options.Kind == NormKind.Layer, hidden, "InputNorm");
        CheckStatistics(statistics, options, rows);
        if (rows == 0) return;

        var kernel = _functions[SpecIndex(options, f.IsEmpty ? DType.BFloat16 : f.DType)].Value.Forward;
        var threadsPerRow = ThreadsPerRow(hidden, ForwardChunks);
        var (groups, blockThreads) = Block(threadsPerRow);
        ulong px = x.Address, pf = f.IsEmpty ? 0 : f.Address, pgOut = outNorm.Gain.Address, pbOut = outNorm.Bias.Address;
        ulong pgIn = inNorm.Gain.Address, pbIn = inNorm.Bias.Address, py = y.Address, pz = z.IsEmpty ? 0 : z.Address;
        ulong pmOut = statistics.MeanOut.Address, prOut = statistics.RstdOut.Address;
        ulong pmIn = statistics.MeanIn.Address, prIn = statistics.RstdIn.Address;
        float alpha = options.Alpha, eps = options.Epsilon;
        void** args = stackalloc void*[]
        {
            &px, &pf, &pgOut, &pbOut, &pgIn, &pbIn, &py, &pz, &pmOut, &prOut, &pmIn, &prIn,
            &rows, &hidden, &threadsPerRow, &alpha, &eps,
        };
        kernel.Launch(LaunchShapes.Blocks(((long)rows + groups - 1) / groups, blockThreads), args, ForwardCost(options, rows, hidden, f, z));
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
        CheckWeights(new NormWeights(outNorm.Gain, default), options.OutputNorm, layer: false, hidden, "OutputNorm", nameof(outNorm));
        CheckWeights(new NormWeights(inNorm.Gain, default), options.InputNorm, layer: false, hidden, "InputNorm", nameof(inNorm));
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
        CheckWeights(outNormGradients, options.OutputNorm, layer, hidden, "OutputNorm");
        CheckWeights(inNormGradients, options.InputNorm, layer, hidden, "InputNorm");
        if (rows == 0) return;

        var functions = _functions[SpecIndex(options, f.IsEmpty ? DType.BFloat16 : f.DType)].Value;
        var threadsPerRow = ThreadsPerRow(hidden, BackwardChunks);
        var (_, blockThreads) = Block(threadsPerRow);
        var blocks = BackwardBlocks(_multiprocessors, rows, hidden);
        var parameters = ParameterCount(options);
        var scratch = parameters == 0 ? default : Partials((long)blocks * parameters * hidden);

        ulong px = x.Address, pf = f.IsEmpty ? 0 : f.Address, py = y.Address, pgOut = outNorm.Gain.Address, pgIn = inNorm.Gain.Address;
        ulong pmOut = statistics.MeanOut.Address, prOut = statistics.RstdOut.Address;
        ulong pmIn = statistics.MeanIn.Address, prIn = statistics.RstdIn.Address;
        ulong pdy = dy.IsEmpty ? 0 : dy.Address, pdz = dz.IsEmpty ? 0 : dz.Address, pdx = dx.Address, pdf = df.IsEmpty ? 0 : df.Address;
        ulong pp = scratch.Address;
        var alpha = options.Alpha;
        void** args = stackalloc void*[]
        {
            &px, &pf, &py, &pgOut, &pgIn, &pmOut, &prOut, &pmIn, &prIn, &pdy, &pdz, &pdx, &pdf, &pp,
            &rows, &hidden, &threadsPerRow, &alpha,
        };
        functions.Backward.Launch(LaunchShapes.Blocks(blocks, blockThreads), args,
                                  BackwardCost(options, rows, hidden, f, dy, dz, (long)blocks * parameters * hidden));
        if (parameters == 0) return;

        // The gradients in partials order: N_out's gain (and bias), then N_in's.
        Span<ulong> gradients = stackalloc ulong[4];
        var count = 0;
        if (options.OutputNorm)
        {
            gradients[count++] = outNormGradients.Gain.Address;
            if (layer) gradients[count++] = outNormGradients.Bias.Address;
        }
        if (options.InputNorm)
        {
            gradients[count++] = inNormGradients.Gain.Address;
            if (layer) gradients[count++] = inNormGradients.Bias.Address;
        }
        ulong g0 = gradients[0], g1 = gradients[1], g2 = gradients[2], g3 = gradients[3];
        void** finalArgs = stackalloc void*[] { &pp, &blocks, &hidden, &g0, &g1, &g2, &g3 };
        var columnBlocks = ((long)parameters * hidden + FinalizeColumns - 1) / FinalizeColumns;
        double partialCount = (double)blocks * parameters * hidden;
        functions.Finalize.Launch(LaunchShapes.Blocks(columnBlocks, FinalizeThreads), finalArgs,
                                  new KernelCost(4 * partialCount + 8.0 * parameters * hidden, partialCount));
    }

    /// <summary>
    /// Float32 elements of the gain-gradient partial sums a backward over <paramref name="rows"/> rows of
    /// <paramref name="hidden"/> needs on a device of <paramref name="multiprocessors"/> SMs (this launcher keeps the
    /// largest it has needed; a memory planner counts it).
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

    /// <inheritdoc />
    public void Dispose()
    {
        _partials?.Dispose();
        _partials = null;
    }

    /// <summary>The gradient sums' scratch, at least <paramref name="length"/> floats; a larger one replaces it after the queued work that may read it.</summary>
    private Tensor Partials(long length)
    {
        if (_partials is null || _partials.Tensor.Length < length)
        {
            if (_partials is not null)
            {
                _device.Synchronize();
                _partials.Dispose();
                _partials = null;
            }
            _partials = _device.Allocate(DType.Float32, new TensorShape(length));
        }
        return _partials.Tensor;
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
    /// The forward's bytes (x, f, y, z per element; gains and biases; saved statistics) and FLOPs (the sum, then
    /// about 7 per element per norm), as kernels/residual_norm.cu counts them.
    /// </summary>
    private static KernelCost ForwardCost(ResidualNormOptions options, long rows, long hidden, Tensor f, Tensor z)
    {
        var norms = (options.OutputNorm ? 1 : 0) + (options.InputNorm ? 1 : 0);
        var perElement = 4 + (f.IsEmpty ? 0 : f.DType.SizeOf()) + 4 + (z.IsEmpty ? 0 : z.DType.SizeOf());
        var statistics = norms * (options.Kind == NormKind.Layer ? 2 : 1);
        return new KernelCost((double)rows * hidden * perElement + 4.0 * statistics * (hidden + rows), (double)rows * hidden * (2 + 7 * norms));
    }

    /// <summary>
    /// The backward's bytes (dy, dz; y with N_in; x and f with N_out; dx and df; gains and statistics; the
    /// partials it writes) and FLOPs (about 12 per element per norm, 1 for dx).
    /// </summary>
    private static KernelCost BackwardCost(ResidualNormOptions options, long rows, long hidden, Tensor f, Tensor dy, Tensor dz, long partials)
    {
        var norms = (options.OutputNorm ? 1 : 0) + (options.InputNorm ? 1 : 0);
        var fBytes = f.IsEmpty ? 0 : f.DType.SizeOf();
        var perElement = (dy.IsEmpty ? 0 : 4) + (dz.IsEmpty ? 0 : dz.DType.SizeOf()) + (options.InputNorm ? 4 : 0)
                         + (options.OutputNorm ? 4 + fBytes : 0) + 4 + fBytes;
        var statistics = norms * (options.Kind == NormKind.Layer ? 2 : 1);
        return new KernelCost((double)rows * hidden * perElement + 4.0 * (norms * hidden + statistics * rows + partials),
                              (double)rows * hidden * (1 + 12 * norms));
    }

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

    /// <summary>A gain (and, for LayerNorm, a bias) of [hidden] Float32 exactly when the norm runs; both empty otherwise.</summary>
    private static void CheckWeights(NormWeights weights, bool runs, bool layer, int hidden, string flag,
                                     [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(weights))] string? name = null)
    {
        CheckVector(weights.Gain, runs, hidden, $"{flag} is off", name!, "Gain", aligned: true);
        CheckVector(weights.Bias, runs && layer, hidden, runs ? "RMSNorm has no bias" : $"{flag} is off", name!, "Bias", aligned: true);
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
