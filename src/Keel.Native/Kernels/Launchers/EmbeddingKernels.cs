using Keel.Cuda.Driver;
using Keel.Native.Devices;
using Keel.Native.Numerics;

namespace Keel.Native.Kernels.Launchers;

/// <summary>
/// Launches <c>kernels/embedding.cu</c>: the token embedding's gather (Float32 or BFloat16 table into the
/// Float32 residual stream) and its deterministic backward (a bitonic sort of (token, position) keys on the
/// device, then tile sums along the sorted keys; no float atomics).
/// <para>
/// Token ids are checked on the device, never trusted as addresses: an id outside [0, vocab) gives a NaN
/// output row forward and is skipped backward (dTable receives nothing for it), and is counted in a small
/// error word in device memory (<see cref="KernelScratch.TokenErrors"/>). Reading that word back would make the
/// host wait for the device after every call and keep the ops out of CUDA graphs, so the check is deferred: the
/// device reads the word whenever it synchronizes anyway, after any number of launches, and
/// <see cref="OutOfRange"/> turns it into an <see cref="ArgumentOutOfRangeException"/> naming <c>tokens</c>, the
/// first bad position and its id.
/// </para>
/// The error word and the backward's sort keys and tile partial sums live in the device's <see cref="KernelWorkspace"/>.
/// </summary>
internal sealed class EmbeddingKernels
{
    /// <summary>The one specialization of embedding.cu.</summary>
    public static KernelSpec Spec { get; } = new("embedding.cu");

    /// <summary>Sorted keys each accumulation block takes (kernels/embedding.cu's TILE).</summary>
    public const int TileSize = 64;

    /// <summary>Keys one block sorts in shared memory (kernels/embedding.cu's SORT_CHUNK).</summary>
    public const int SortChunk = 4096;

    /// <summary>Int32 words of the error word (<see cref="KernelScratch.TokenErrors"/>).</summary>
    public const int ErrorWords = 4;

    private const int Threads = 256, SortThreads = 1024, AccumulateThreads = 128;
    private readonly KernelWorkspace _workspace;
    private readonly Lazy<Functions> _functions;
    private readonly int _maxBlocks;

    /// <summary>Prepares to launch on <paramref name="runtime"/>, with the error word and scratch in <paramref name="workspace"/>.</summary>
    public EmbeddingKernels(IKernelRuntime runtime, KernelWorkspace workspace)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        ArgumentNullException.ThrowIfNull(workspace);
        _workspace = workspace;
        _functions = new(() => new Functions(runtime));
        _maxBlocks = runtime.MultiprocessorCount * 8;
    }

    /// <summary>output[t, :] = table[tokens[t], :]: tokens Int32 (any shape, T elements), table [vocab, dim] Float32 or BFloat16, output Float32 [T, dim].</summary>
    /// <exception cref="ArgumentException">
    /// A type or element count is wrong, dim is not a multiple of 4 (Float32 table) or 8 (BFloat16), or a tensor is
    /// not 16-byte aligned — before the launch.
    /// </exception>
    public void Forward(Tensor tokens, Tensor table, Tensor output)
    {
        var count = TokenCount(tokens);
        if (table.DType is not (DType.Float32 or DType.BFloat16))
            throw new ArgumentException($"table is {table.DType}; Float32 or BFloat16 expected.", nameof(table));
        var (vocab, dim) = TableShape(table, 16 / table.DType.SizeOf());
        Require.DType(output, DType.Float32);
        Require.Length(output, count * dim);
        Require.Aligned(output, 16);
        if (count == 0) return;

        var functions = _functions.Value;
        var vectors = count * dim / (16 / table.DType.SizeOf());
        var blocks = Math.Clamp((vectors + Threads - 1) / Threads, 1, _maxBlocks);
        (table.DType == DType.Float32 ? functions.ForwardF32 : functions.ForwardBf16).Launch(LaunchShapes.Blocks(blocks, Threads),
            [tokens, table, output, count, vocab, dim, Errors()],
            new KernelCost((double)count * dim * (table.DType.SizeOf() + 4) + 4.0 * count, 0));
    }

    /// <summary>
    /// dTable[tokens[t], :] += dOutput[t, :] for every t, deterministically: each row's contributions are
    /// summed in fp32 in an order fixed by the tokens alone, then added once.
    /// </summary>
    /// <exception cref="ArgumentException">
    /// tokens is not Int32; dOutput or dTable is not Float32, dTable is not a matrix [vocab, dim] with dim a
    /// multiple of 4, dOutput does not have T·dim elements or overlaps dTable, or a tensor is not 16-byte aligned.
    /// </exception>
    public void Backward(Tensor tokens, Tensor dOutput, Tensor dTable)
    {
        var count = TokenCount(tokens);
        Require.DType(dTable, DType.Float32);
        var (vocab, dim) = TableShape(dTable, 4);
        Require.DType(dOutput, DType.Float32);
        Require.Length(dOutput, count * dim);
        Require.Aligned(dOutput, 16);
        Overlap.RequireDisjoint(dTable, dOutput);
        if (count == 0) return;

        var functions = _functions.Value;
        var errors = Errors();
        var layout = new SortLayout(count, dim);
        var scratch = _workspace.Get(KernelScratch.EmbeddingSort, DType.Int32, layout.Bytes / sizeof(int));
        var keys = KernelArgument.Pointer(scratch.Address);
        var partials = KernelArgument.Pointer(scratch.Address + (ulong)layout.PartialsOffset);
        var n = layout.Keys;

        // The sort: chunks in shared memory, then each larger merge's long strides globally, its short ones per chunk.
        var chunk = (int)Math.Min(n, SortChunk);
        functions.SortKeys.Launch(LaunchShapes.Blocks(n / chunk, Math.Min(SortThreads, chunk / 2)), [tokens, count, vocab, keys, n, errors]);
        var mergeBlocks = Math.Clamp((n / 2 + Threads - 1) / Threads, 1, _maxBlocks);
        for (var size = 2L * chunk; size <= n; size *= 2)
        {
            for (var logStride = Log2(size / 2); logStride >= Log2(chunk); logStride--)
                functions.SortMerge.Launch(LaunchShapes.Blocks(mergeBlocks, Threads), [keys, n, size, logStride]);
            functions.SortMergeChunk.Launch(LaunchShapes.Blocks(n / SortChunk, SortThreads), [keys, n, size]);
        }

        var threads = (int)Math.Min(AccumulateThreads, (dim / 4 + 31) / 32 * 32);
        var slices = (dim / 4 + threads - 1) / threads;
        var shape = new LaunchShape(new Dim3(checked((int)layout.Tiles), slices), new Dim3(threads));
        functions.Tiles.Launch(shape, [keys, count, dOutput, dTable, partials, dim]);
        functions.Spans.Launch(shape, [keys, count, partials, dTable, dim]);
    }

    /// <summary>The number of sort keys for <paramref name="count"/> tokens: the next power of two, at least 64.</summary>
    public static long SortLength(long count) => Math.Max(64, (long)System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)count));

    /// <summary>
    /// Bytes of <see cref="KernelScratch.EmbeddingSort"/> a backward over <paramref name="count"/> tokens of width
    /// <paramref name="dim"/> uses: the sort keys, then the tiles' partial sums (a memory planner counts it).
    /// </summary>
    public static long SortScratchBytes(long count, int dim)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dim);
        return count == 0 ? 0 : new SortLayout(count, dim).Bytes;
    }

    private static long TokenCount(Tensor tokens)
    {
        Require.DType(tokens, DType.Int32);
        // Positions travel in the low 32 bits of a sort key and index the grid.
        if (tokens.Length > int.MaxValue)
            throw new ArgumentException($"tokens has {tokens.Length} elements; at most {int.MaxValue} are supported.", nameof(tokens));
        return tokens.Length;
    }

    private static (int Vocab, int Dim) TableShape(Tensor table, int dimMultiple, [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(table))] string? name = null)
    {
        if (table.Shape.Rank != 2 || table.Shape[0] > int.MaxValue || table.Shape[1] > int.MaxValue || table.IsEmpty)
            throw new ArgumentException($"{name} has shape {table.Shape}; a non-empty matrix [vocab, dim] is expected.", name);
        if (table.Shape[1] % dimMultiple != 0)
            throw new ArgumentException($"{name} has dim {table.Shape[1]}; a multiple of {dimMultiple} is expected for {table.DType} (16-byte vectors).", name);
        Require.Aligned(table, 16, name);
        return ((int)table.Shape[0], (int)table.Shape[1]);
    }

    private Tensor Errors() => _workspace.Get(KernelScratch.TokenErrors, DType.Int32, ErrorWords);

    /// <summary>
    /// The error the word read back from <see cref="KernelScratch.TokenErrors"/> reports, or null when it reports none
    /// (all zeros, as a new or cleared word is). Clear the word after an error, so the next check starts afresh.
    /// </summary>
    public static ArgumentOutOfRangeException? OutOfRange(ReadOnlySpan<int> word)
    {
        if (word.Length != ErrorWords) throw new ArgumentException($"The error word has {ErrorWords} elements, not {word.Length}.", nameof(word));
        if (word[0] == 0) return null;
        // words 2..3: the smallest (position << 32 | id) as a little-endian u64, complemented so that zero means none.
        var key = ~((ulong)(uint)word[3] << 32 | (uint)word[2]);
        int id = (int)(uint)key, position = (int)(key >> 32);
        return new ArgumentOutOfRangeException("tokens", id,
            $"tokens[{position}] = {id} is outside the vocabulary ({(uint)word[0]} token(s) out of range; an embedding op since the last synchronization met them).");
    }

    /// <summary>Where the backward's keys and partial sums lie in its scratch.</summary>
    private readonly struct SortLayout
    {
        public SortLayout(long count, int dim)
        {
            Keys = SortLength(count);
            Tiles = (count + TileSize - 1) / TileSize;
            // 8-byte keys; n is a power of two of at least 64, so the partial sums start 16-byte aligned.
            PartialsOffset = Keys * sizeof(ulong);
            Bytes = PartialsOffset + Tiles * 2 * dim * sizeof(float);
        }

        /// <summary>Sort keys: a power of two, at least 64.</summary>
        public long Keys { get; }

        /// <summary>Accumulation tiles, each with two partial rows.</summary>
        public long Tiles { get; }

        public long PartialsOffset { get; }

        public long Bytes { get; }
    }

    private static int Log2(long powerOfTwo) => System.Numerics.BitOperations.Log2((ulong)powerOfTwo);

    private sealed class Functions(IKernelRuntime runtime)
    {
        public KernelFunction ForwardF32 { get; } = runtime.Load(Spec, "keel_embedding_forward_f32");
        public KernelFunction ForwardBf16 { get; } = runtime.Load(Spec, "keel_embedding_forward_bf16");
        public KernelFunction SortKeys { get; } = runtime.Load(Spec, "keel_embedding_sort_keys");
        public KernelFunction SortMerge { get; } = runtime.Load(Spec, "keel_embedding_sort_merge");
        public KernelFunction SortMergeChunk { get; } = runtime.Load(Spec, "keel_embedding_sort_merge_chunk");
        public KernelFunction Tiles { get; } = runtime.Load(Spec, "keel_embedding_backward_tiles");
        public KernelFunction Spans { get; } = runtime.Load(Spec, "keel_embedding_backward_spans");
    }
}
