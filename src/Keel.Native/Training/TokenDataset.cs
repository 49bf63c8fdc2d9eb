using System.Text;

namespace Keel.Native.Training;

/// <summary>
/// A tokenized text split into a training part and a held-out validation part (the last
/// <c>validationFraction</c> of the tokens), kept in host memory, with the tokenizer that made it (which a
/// <see cref="Trainer"/> checks the model's vocabulary against and checkpoints record).
/// </summary>
/// <example>
/// <code>
/// var data = TokenDataset.FromFile("tinyshakespeare.txt", new ByteTokenizer(), validationFraction: 0.1);
/// Console.WriteLine($"{data.Train.Length} training tokens, vocabulary {data.Tokenizer.VocabularySize}");
/// </code>
/// </example>
public sealed class TokenDataset
{
    private TokenDataset(string source, ITextTokenizer tokenizer, int[] train, int[] validation)
    {
        Source = source;
        Tokenizer = tokenizer;
        Train = train;
        Validation = validation;
    }

    /// <summary>Where the text came from (a path, or a description).</summary>
    public string Source { get; }

    /// <summary>The tokenizer that made the tokens.</summary>
    public ITextTokenizer Tokenizer { get; }

    /// <summary>The training tokens.</summary>
    public int[] Train { get; }

    /// <summary>The held-out tokens (after the training ones in the text).</summary>
    public int[] Validation { get; }

    /// <summary>Reads and tokenizes a UTF-8 text file (a leading UTF-8 byte-order mark is skipped).</summary>
    /// <exception cref="FileNotFoundException">The file does not exist, or is a folder (the message gives the path).</exception>
    /// <exception cref="InvalidDataException">The file is not valid UTF-8 (UTF-16 included), or is empty.</exception>
    public static TokenDataset FromFile(string path, ITextTokenizer tokenizer, double validationFraction)
    {
        ArgumentNullException.ThrowIfNull(path);
        var full = Path.GetFullPath(path);
        if (Directory.Exists(full)) throw new FileNotFoundException($"Data file {full} is a folder, not a text file.", full);
        if (!File.Exists(full)) throw new FileNotFoundException($"Data file {full} does not exist.", full);
        var bytes = File.ReadAllBytes(full);
        if (bytes.Length == 0) throw new InvalidDataException($"Data file {full} is empty.");
        var bom = Encoding.UTF8.Preamble;
        var body = bytes.AsSpan().StartsWith(bom) ? bytes.AsSpan(bom.Length) : bytes;
        string text;
        try
        {
            // Strict decoding, and no byte-order-mark sniffing: a UTF-16 file is reported, not read as something else.
            text = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true).GetString(body);
        }
        catch (DecoderFallbackException e)
        {
            throw new InvalidDataException($"Data file {full} is not valid UTF-8 text: {e.Message}", e);
        }
        if (text.Length == 0) throw new InvalidDataException($"Data file {full} is empty.");
        return FromText(text, tokenizer, validationFraction, full);
    }

    /// <summary>Tokenizes <paramref name="text"/> and splits off the last <paramref name="validationFraction"/> of the tokens.</summary>
    public static TokenDataset FromText(string text, ITextTokenizer tokenizer, double validationFraction, string source)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (!(validationFraction > 0 && validationFraction < 1))
            throw new ArgumentOutOfRangeException(nameof(validationFraction), validationFraction, "validationFraction must be in (0, 1).");
        var tokens = tokenizer.Encode(text);
        var validation = (int)Math.Round(tokens.Length * validationFraction);
        return new TokenDataset(source, tokenizer, tokens[..^validation], tokens[^validation..]);
    }

    /// <summary>Checks that both parts hold at least one window of <paramref name="sequenceLength"/> + 1 tokens.</summary>
    /// <exception cref="ArgumentException">A part is too short; names SequenceLength and the data.</exception>
    public void RequireWindows(int sequenceLength)
    {
        if (Train.Length < sequenceLength + 1 || Validation.Length < sequenceLength + 1)
            throw new ArgumentException(
                $"SequenceLength ({sequenceLength}) is longer than the data allows: {Source} gives {Train.Length} training and {Validation.Length} validation tokens, and each part needs at least {sequenceLength + 1}.",
                "SequenceLength");
    }
}

/// <summary>
/// Batches of token windows for training and evaluation. A training batch is drawn at random from the training
/// tokens by a generator seeded with (seed, step, micro-batch), so it depends on nothing else: a resumed run
/// sees the very batches an uninterrupted one would.
/// </summary>
public static class Batches
{
    /// <summary>
    /// Fills rows of a training batch of <paramref name="batchSize"/> windows of S + 1 tokens at random offsets (tokens are
    /// a window's first S, targets its last S): as many rows as <paramref name="tokens"/> holds, from row
    /// <paramref name="firstRow"/> (a data-parallel rank's share; the whole batch by default). Row r's window is the r-th
    /// draw of the generator, whatever the rows asked for.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The rows asked for go past the batch.</exception>
    public static void FillTraining(int[] data, ulong seed, int step, int microBatch, int batchSize, int sequenceLength, Span<int> tokens, Span<int> targets, int firstRow = 0)
    {
        ArgumentNullException.ThrowIfNull(data);
        var rows = tokens.Length / sequenceLength;
        if (firstRow < 0 || firstRow + rows > batchSize)
            throw new ArgumentOutOfRangeException(nameof(firstRow), firstRow, $"Rows {firstRow} to {firstRow + rows - 1} are not all in a batch of {batchSize}.");
        var random = new Model.SeededRandom(seed, 0x7261696EUL, (ulong)step, (ulong)microBatch);
        for (var b = 0; b < firstRow; b++) random.NextInt64(data.Length - sequenceLength);
        for (var b = 0; b < rows; b++)
        {
            var start = (int)random.NextInt64(data.Length - sequenceLength);
            data.AsSpan(start, sequenceLength).CopyTo(tokens.Slice(b * sequenceLength, sequenceLength));
            data.AsSpan(start + 1, sequenceLength).CopyTo(targets.Slice(b * sequenceLength, sequenceLength));
        }
    }

    /// <summary>Number of evaluation windows in <paramref name="tokenCount"/> tokens: consecutive, non-overlapping, of S tokens each (a last partial one dropped).</summary>
    public static int WindowCount(int tokenCount, int sequenceLength) => tokenCount / sequenceLength;

    /// <summary>
    /// Fills an evaluation batch from windows <paramref name="firstWindow"/>.. of <paramref name="data"/>: within a
    /// window of S tokens, positions 0..S−2 predict 1..S−1 (the last position's target is −1, ignored). Rows past
    /// the last of the first <paramref name="windows"/> windows are all ignored. Returns the number of predicted tokens.
    /// </summary>
    public static int FillEvaluation(int[] data, int firstWindow, int windows, int batchSize, int sequenceLength, Span<int> tokens, Span<int> targets)
    {
        ArgumentNullException.ThrowIfNull(data);
        windows = Math.Min(windows, WindowCount(data.Length, sequenceLength));
        var counted = 0;
        for (var b = 0; b < batchSize; b++)
        {
            var rowTokens = tokens.Slice(b * sequenceLength, sequenceLength);
            var rowTargets = targets.Slice(b * sequenceLength, sequenceLength);
            var window = firstWindow + b;
            if (window >= windows)
            {
                rowTokens.Clear();
                rowTargets.Fill(Reference.CrossEntropy.IgnoreTarget);
                continue;
            }
            var source = data.AsSpan(window * sequenceLength, sequenceLength);
            source.CopyTo(rowTokens);
            source[1..].CopyTo(rowTargets);
            rowTargets[^1] = Reference.CrossEntropy.IgnoreTarget;
            counted += sequenceLength - 1;
        }
        return counted;
    }
}
