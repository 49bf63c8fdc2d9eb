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
/// error word in device memory. Reading that word back would make the host wait for the device after every
/// call and keep the ops out of CUDA graphs, so the check is deferred: <see cref="ThrowIfTokensWereOutOfRange"/>,
/// which the device calls whenever it synchronizes anyway, reads the word once after any number of launches
/// and throws <see cref="ArgumentOutOfRangeException"/> naming <c>tokens</c>, the first bad position and its id.
/// </para>
/// Owns its scratch (the error word, the sort keys and the tile partial sums), allocated on the device on
/// first use and grown when a larger batch comes by, so steady-state calls allocate nothing.
/// </summary>
internal sealed unsafe class EmbeddingKernels : IDisposable
{
    /// <summary>The one specialization of embedding.cu.</summary>
    public static KernelSpec Spec { get; } = new("embedding.cu");

    /// <summary>Sorted keys each accumulation block takes (kernels/embedding.cu's TILE).</summary>
    public const int TileSize = 64;

    /// <summary>Keys one block sorts in shared memory (kernels/embedding.cu's SORT_CHUNK).</summary>
    public const int SortChunk = 4096;

    private const int Threads = 256, SortThreads = 1024, AccumulateThreads = 128, ErrorWords = 4;
    private readonly IDevice _device;
    private readonly Lazy<Functions> _functions;
    private readonly int _maxBlocks;
    private DeviceBuffer? _errors, _keys, _partials;
    private bool _checkPending;

    /// <summary>Prepares to launch on <paramref name="runtime"/>, with scratch memory from <paramref name="device"/> (the device the runtime runs).</summary>
    public EmbeddingKernels(IKernelRuntime runtime, IDevice device)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        ArgumentNullException.ThrowIfNull(device);
        _device = device;
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
        ulong t = tokens.Address, w = table.Address, o = output.Address, e = Errors().Address;
        var vectors = count * dim / (16 / table.DType.SizeOf());
        var blocks = Math.Clamp((vectors + Threads - 1) / Threads, 1, _maxBlocks);
        void** args = stackalloc void*[] { &t, &w, &o, &count, &vocab, &dim, &e };
        (table.DType == DType.Float32 ? functions.ForwardF32 : functions.ForwardBf16).Launch(LaunchShapes.Blocks(blocks, Threads), args,
            new KernelCost((double)count * dim * (table.DType.SizeOf() + 4) + 4.0 * count, 0));
        _checkPending = true;
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
        var n = SortLength(count);
        var tiles = (count + TileSize - 1) / TileSize;
        var keys = Scratch(ref _keys, DType.Int32, 2 * n);
        var partials = Scratch(ref _partials, DType.Float32, tiles * 2 * dim);
        ulong t = tokens.Address, k = keys.Address, p = partials.Address, d = dOutput.Address, table = dTable.Address, e = Errors().Address;

        // The sort: chunks in shared memory, then each larger merge's long strides globally, its short ones per chunk.
        var chunk = (int)Math.Min(n, SortChunk);
        void** sortArgs = stackalloc void*[] { &t, &count, &vocab, &k, &n, &e };
        functions.SortKeys.Launch(LaunchShapes.Blocks(n / chunk, Math.Min(SortThreads, chunk / 2)), sortArgs);
        _checkPending = true;
        var mergeBlocks = Math.Clamp((n / 2 + Threads - 1) / Threads, 1, _maxBlocks);
        long size = 2L * chunk;
        int logStride;
        void** mergeArgs = stackalloc void*[] { &k, &n, &size, &logStride };
        void** chunkArgs = stackalloc void*[] { &k, &n, &size };
        for (; size <= n; size *= 2)
        {
            for (logStride = Log2(size / 2); logStride >= Log2(chunk); logStride--)
                functions.SortMerge.Launch(LaunchShapes.Blocks(mergeBlocks, Threads), mergeArgs);
            functions.SortMergeChunk.Launch(LaunchShapes.Blocks(n / SortChunk, SortThreads), chunkArgs);
        }

        var threads = (int)Math.Min(AccumulateThreads, (dim / 4 + 31) / 32 * 32);
        var slices = (dim / 4 + threads - 1) / threads;
        var shape = new LaunchShape(new Dim3(checked((int)tiles), slices), new Dim3(threads));
        void** tileArgs = stackalloc void*[] { &k, &count, &d, &table, &p, &dim };
        functions.Tiles.Launch(shape, tileArgs);
        void** spanArgs = stackalloc void*[] { &k, &count, &p, &table, &dim };
        functions.Spans.Launch(shape, spanArgs);
    }

    /// <summary>The number of sort keys for <paramref name="count"/> tokens: the next power of two, at least 64.</summary>
    public static long SortLength(long count) => Math.Max(64, (long)System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)count));

    /// <summary>
    /// Bytes of scratch this launcher holds once it has run forward and backward on <paramref name="count"/> tokens of
    /// width <paramref name="dim"/>: the error word, the sort keys and the tile partial sums, each as <see cref="Scratch"/>
    /// sizes it (a memory planner counts these).
    /// </summary>
    public static long ScratchBytes(long count, int dim)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dim);
        var tiles = (count + TileSize - 1) / TileSize;
        long keys = ScratchLength(2 * SortLength(count)) * sizeof(int);
        long partials = count == 0 ? 0 : ScratchLength(tiles * 2 * dim) * sizeof(float);
        return ErrorWords * sizeof(int) + keys + partials;
    }

    private static long ScratchLength(long length) => (long)System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)length);

    /// <inheritdoc />
    public void Dispose()
    {
        _errors?.Dispose();
        _keys?.Dispose();
        _partials?.Dispose();
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

    private Tensor Errors()
    {
        if (_errors is null)
        {
            _errors = _device.Allocate(DType.Int32, new TensorShape(ErrorWords));
            ResetErrors();
        }
        return _errors;
    }

    // errors[0]: count; errors[2..3]: the smallest (position << 32 | id) as a little-endian u64, all ones when none.
    private void ResetErrors() => _device.CopyFromHost<int>(stackalloc int[ErrorWords] { 0, 0, -1, -1 }, _errors!);

    /// <summary>
    /// Reads the device's error word if an embedding op ran since the last check, and throws for the first
    /// out-of-range token id any of them met. The read waits for the device: call it where the host waits anyway.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">An embedding op since the last check met a token id outside [0, vocab).</exception>
    public void ThrowIfTokensWereOutOfRange()
    {
        if (!_checkPending) return;
        // Cleared first: the read below synchronizes the device, which calls back here.
        _checkPending = false;
        Span<int> word = stackalloc int[ErrorWords];
        _device.CopyToHost<int>(_errors!, word);
        if (word[0] == 0) return;
        ResetErrors();
        throw new ArgumentOutOfRangeException("tokens", word[2],
            $"tokens[{(uint)word[3]}] = {word[2]} is outside the vocabulary ({(uint)word[0]} token(s) out of range; an embedding op since the last synchronization met them).");
    }

    /// <summary>Makes the next <see cref="ThrowIfTokensWereOutOfRange"/> read the error word: kernels ran that this launcher did not queue itself (a replayed graph).</summary>
    internal void ExpectCheck() => _checkPending |= _errors is not null;

    private Tensor Scratch(ref DeviceBuffer? buffer, DType dtype, long length)
    {
        if (buffer is null || buffer.Tensor.Length < length)
        {
            buffer?.Dispose();
            buffer = null;
            buffer = _device.Allocate(dtype, new TensorShape(ScratchLength(length)));
        }
        return buffer.Tensor.Slice(0, length);
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
