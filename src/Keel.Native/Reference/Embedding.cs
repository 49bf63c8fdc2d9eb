using System.Buffers;
using System.Numerics;

namespace Keel.Native.Reference;

/// <summary>
/// Token embedding: out[t, :] = table[token[t], :] with table [vocab, dim]. Backward accumulates (+=)
/// dTable[token[t], :] += dOut[t, :]: the rows of each distinct token are summed in fp64 in token-position order,
/// then added once, so the result is deterministic (a GPU kernel gets the same order by sorting tokens).
/// </summary>
public static class Embedding
{
    /// <summary>out[t, :] = table[tokens[t], :].</summary>
    /// <param name="vocab">Rows of the table; positive.</param>
    /// <param name="dim">Embedding width; positive.</param>
    /// <param name="tokens">Token ids, each in [0, vocab).</param>
    /// <param name="table">The embedding table [vocab, dim].</param>
    /// <param name="output">Output [tokens.Length, dim].</param>
    /// <exception cref="ArgumentException">A size or a span's length is invalid, or a token is out of range.</exception>
    public static void Forward<T>(int vocab, int dim, ReadOnlySpan<int> tokens, ReadOnlySpan<T> table, Span<T> output)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Validate(vocab, dim, tokens, table, nameof(table));
        Guard.Shape(output, nameof(output), tokens.Length, dim);
        Guard.Disjoint(output, nameof(output), table, nameof(table));
        for (var t = 0; t < tokens.Length; t++) table.Slice(tokens[t] * dim, dim).CopyTo(output.Slice(t * dim, dim));
    }

    /// <summary>dTable[tokens[t], :] += dOutput[t, :] for every t (accumulated; see the class summary for the order).</summary>
    /// <param name="vocab">Rows of the table; positive.</param>
    /// <param name="dim">Embedding width; positive.</param>
    /// <param name="tokens">Forward's token ids, each in [0, vocab).</param>
    /// <param name="dOutput">Gradient of the output [tokens.Length, dim].</param>
    /// <param name="dTable">Accumulated: gradient of the table [vocab, dim].</param>
    /// <exception cref="ArgumentException">A size or a span's length is invalid, or a token is out of range.</exception>
    public static void Backward<T>(int vocab, int dim, ReadOnlySpan<int> tokens, ReadOnlySpan<T> dOutput, Span<T> dTable)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Validate(vocab, dim, tokens, dTable, nameof(dTable));
        Guard.Shape(dOutput, nameof(dOutput), tokens.Length, dim);
        Guard.Disjoint(dTable, nameof(dTable), dOutput, nameof(dOutput));

        // Sort positions by (token, position); each run of equal tokens is then summed in position order.
        var keys = ArrayPool<long>.Shared.Rent(tokens.Length);
        var sum = ArrayPool<double>.Shared.Rent(dim);
        try
        {
            for (var t = 0; t < tokens.Length; t++) keys[t] = (long)tokens[t] << 32 | (uint)t;
            Array.Sort(keys, 0, tokens.Length);
            for (var start = 0; start < tokens.Length;)
            {
                var token = (int)(keys[start] >> 32);
                Array.Clear(sum, 0, dim);
                var end = start;
                for (; end < tokens.Length && (int)(keys[end] >> 32) == token; end++)
                {
                    var row = dOutput.Slice((int)(uint)keys[end] * dim, dim);
                    for (var d = 0; d < dim; d++) sum[d] += double.CreateTruncating(row[d]);
                }
                var target = dTable.Slice(token * dim, dim);
                for (var d = 0; d < dim; d++) target[d] = T.CreateTruncating(double.CreateTruncating(target[d]) + sum[d]);
                start = end;
            }
        }
        finally
        {
            ArrayPool<double>.Shared.Return(sum);
            ArrayPool<long>.Shared.Return(keys);
        }
    }

    private static void Validate<T>(int vocab, int dim, ReadOnlySpan<int> tokens, ReadOnlySpan<T> table, string tableName)
    {
        Guard.Positive(vocab, nameof(vocab));
        Guard.Positive(dim, nameof(dim));
        Guard.Shape(table, tableName, vocab, dim);
        for (var t = 0; t < tokens.Length; t++)
        {
            if ((uint)tokens[t] >= (uint)vocab)
                throw new ArgumentOutOfRangeException(nameof(tokens), tokens[t], $"tokens[{t}] = {tokens[t]} is outside [0, {vocab}).");
        }
    }
}
