using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Json;
using Keel.Native.Model;

namespace Keel.Native.Training;

/// <summary>
/// What every rank of a data-parallel run must have been given alike, as the texts <see cref="Distributed.RankAgreement.RequireSame"/>
/// compares: the model config and the training options as JSON (so a difference is named by field), the tokenizer, and
/// the data by size and SHA-256 of its tokens (the same text may sit at different paths on different nodes).
/// </summary>
public static class RunFingerprint
{
    /// <summary>The named parts of a run.</summary>
    public static IReadOnlyList<(string Name, string Text)> Parts(ModelConfig config, TrainingOptions options, TokenDataset data)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(data);
        return
        [
            ("model config", config.ToJson()),
            ("training options", JsonSerializer.Serialize(options, ModelConfig.JsonOptions)),
            ("tokenizer", data.Tokenizer.Kind.ToString()),
            ("data", $"{data.Train.Length} training and {data.Validation.Length} validation tokens, SHA-256 {Digest(data.Train, data.Validation)}"),
        ];
    }

    private static string Digest(int[] train, int[] validation)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(MemoryMarshal.AsBytes(train.AsSpan()));
        hash.AppendData(MemoryMarshal.AsBytes(validation.AsSpan()));
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }
}
