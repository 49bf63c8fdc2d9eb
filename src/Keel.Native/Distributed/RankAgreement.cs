using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;

namespace Keel.Native.Distributed;

/// <summary>
/// Decisions every rank of a job takes together, so that a problem found on some ranks stops all of them with one
/// message: <see cref="Agree"/> (did every rank succeed?) and <see cref="RequireSame"/> (was every rank given the same run?).
/// </summary>
public static class RankAgreement
{
    /// <summary>The most bytes of one rank's message that reach the others (longer ones are cut).</summary>
    public const int MessageBytes = 1024;

    /// <summary>
    /// Each rank says whether it can go on (<paramref name="failure"/> null) or why not; when any cannot, every rank throws
    /// the same <see cref="DistributedException"/>, naming the ranks and their reasons (ranks with the same reason together;
    /// a reason every rank gives is told once, as one process would tell it).
    /// </summary>
    public static void Agree(this IRankGroup ranks, string? failure)
    {
        ArgumentNullException.ThrowIfNull(ranks);
        Span<byte> mine = stackalloc byte[MessageBytes + 1];
        mine.Clear();
        if (failure is not null)
        {
            mine[0] = 1;
            Encode(failure, mine[1..]);
        }
        var all = new byte[(MessageBytes + 1) * ranks.Size];
        ranks.AllGather(mine, all);
        var failures = new List<(int Rank, string Message)>();
        for (var r = 0; r < ranks.Size; r++)
        {
            var block = all.AsSpan(r * (MessageBytes + 1), MessageBytes + 1);
            if (block[0] != 0) failures.Add((r, Encoding.UTF8.GetString(block[1..].TrimEnd((byte)0))));
        }
        if (failures.Count == 0) return;
        var groups = failures.GroupBy(f => f.Message).ToList();
        if (failures.Count == ranks.Size && groups.Count == 1) throw new DistributedException(groups[0].Key);
        throw new DistributedException(string.Join("; ", groups.Select(g => $"{RankList([.. g.Select(f => f.Rank)])}: {g.Key}")));
    }

    /// <summary>
    /// Checks that every rank was given the same <paramref name="parts"/> (each a name and a canonical text, such as the
    /// model config's JSON): SHA-256 digests are gathered, and a rank whose part differs from rank 0's says how (the JSON
    /// fields that differ, with both values, when the text is a JSON object). Throws <see cref="DistributedException"/> on
    /// every rank when any part differs anywhere.
    /// </summary>
    public static void RequireSame(this IRankGroup ranks, IReadOnlyList<(string Name, string Text)> parts)
    {
        ArgumentNullException.ThrowIfNull(ranks);
        ArgumentNullException.ThrowIfNull(parts);
        var digests = new byte[parts.Count * SHA256.HashSizeInBytes];
        for (var i = 0; i < parts.Count; i++) SHA256.HashData(Encoding.UTF8.GetBytes(parts[i].Text), digests.AsSpan(i * SHA256.HashSizeInBytes));
        var all = new byte[digests.Length * ranks.Size];
        ranks.AllGather(digests, all);
        var rootDigests = all.AsSpan(0, digests.Length);
        var anyDiffers = false;
        for (var r = 1; r < ranks.Size && !anyDiffers; r++) anyDiffers = !all.AsSpan(r * digests.Length, digests.Length).SequenceEqual(rootDigests);
        if (!anyDiffers) return;

        // Rank 0's texts, so that each rank can say what it has differently.
        string? failure = null;
        for (var i = 0; i < parts.Count; i++)
        {
            var root = ranks.BroadcastText(parts[i].Text);
            if (failure is null && root != parts[i].Text) failure = $"different {parts[i].Name} from rank 0: {Difference(parts[i].Text, root)}";
        }
        ranks.Agree(failure);
    }

    /// <summary>Rank 0's <paramref name="text"/> on every rank (such as the run folder it chose).</summary>
    public static string BroadcastText(this IRankGroup ranks, string text)
    {
        ArgumentNullException.ThrowIfNull(ranks);
        ArgumentNullException.ThrowIfNull(text);
        var bytes = Encoding.UTF8.GetBytes(text);
        Span<byte> length = stackalloc byte[sizeof(int)];
        BitConverter.TryWriteBytes(length, bytes.Length);
        ranks.Broadcast(length, 0);
        var buffer = ranks.Rank == 0 ? bytes : new byte[BitConverter.ToInt32(length)];
        ranks.Broadcast(buffer, 0);
        return Encoding.UTF8.GetString(buffer);
    }

    /// <summary>The top-level JSON fields in which <paramref name="mine"/> differs from <paramref name="root"/>, or a digest comparison.</summary>
    private static string Difference(string mine, string root)
    {
        try
        {
            if (JsonNode.Parse(mine) is JsonObject a && JsonNode.Parse(root) is JsonObject b)
            {
                var fields = a.Select(p => p.Key).Union(b.Select(p => p.Key)).Where(k => !JsonNode.DeepEquals(a[k], b[k]))
                    .Select(k => $"{k} {Show(a[k])} (rank 0: {Show(b[k])})").ToList();
                if (fields.Count > 0) return string.Join(", ", fields);
            }
        }
        catch (System.Text.Json.JsonException)
        {
            // Not JSON: compared by digest below.
        }
        return $"SHA-256 {Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(mine)))[..12]} (rank 0: {Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(root)))[..12]})";
    }

    private static string Show(JsonNode? node) => node?.ToJsonString() ?? "(absent)";

    /// <summary>"rank 2", "ranks 0-3" or "ranks 1, 3".</summary>
    private static string RankList(List<int> ranks)
    {
        if (ranks.Count == 1) return $"rank {ranks[0]}";
        var contiguous = ranks[^1] - ranks[0] == ranks.Count - 1;
        return contiguous ? $"ranks {ranks[0]}-{ranks[^1]}" : "ranks " + string.Join(", ", ranks);
    }

    /// <summary>The UTF-8 bytes of <paramref name="text"/> that fit <paramref name="destination"/> (cut at a character boundary).</summary>
    private static void Encode(string text, Span<byte> destination)
    {
        var encoder = Encoding.UTF8.GetEncoder();
        encoder.Convert(text, destination, flush: true, out _, out _, out _);
    }
}
