using System.Text;

namespace Keel.Native.Training;

/// <summary>
/// The built-in task <c>keel train</c> learns when no data file is given: lines <c>word|word</c> where the word
/// is 6 random lowercase letters and the part after the bar copies it. The letters before the bar are
/// unpredictable (ln 26 ≈ 3.26 nats each), the rest of the line fully predictable, so the loss falls in two
/// visible stages: first to the letter statistics (about 3.3), then, once an attention head learns to look 7
/// characters back, towards the floor of 6 · 3.26 / 14 ≈ 1.40 nats per character.
/// </summary>
public static class SyntheticTask
{
    /// <summary>Letters per word: fixed, so the copy is a fixed distance back and one small model learns it quickly.</summary>
    public const int WordLength = 6;

    /// <summary>The lowest loss the task allows, in nats per character: only the first word's letters are uncertain.</summary>
    public static double LossFloor => WordLength * Math.Log(26) / (2 * WordLength + 2);

    /// <summary>A copy-task text of about <paramref name="characters"/> characters, the same for the same seed.</summary>
    public static string Generate(ulong seed, int characters)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(characters);
        var random = new Model.SeededRandom(seed, 0x636F7079UL);
        var text = new StringBuilder(characters + 32);
        Span<char> word = stackalloc char[8];
        while (text.Length < characters)
        {
            const int length = WordLength;
            for (var i = 0; i < length; i++) word[i] = (char)('a' + random.NextInt64(26));
            text.Append(word[..length]).Append('|').Append(word[..length]).Append('\n');
        }
        return text.ToString();
    }

    /// <summary>A prompt for <c>keel sample</c> on this task: a few lines of it, ending in a fresh word and its bar.</summary>
    public static string Prompt => "normal|normal\nresidu|residu\nstream|";
}
