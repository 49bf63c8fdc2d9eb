using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Keel.Native.Memory;

/// <summary>The families of activation policies.</summary>
public enum MemoryPolicyKind
{
    /// <summary>Keep every tensor every sub-layer's forward writes until its backward; recompute nothing.</summary>
    Store,

    /// <summary>Keep GEMM and attention outputs and the residual stream; drop the normalized inputs z and the FFN activation h and recompute them (cheap elementwise work) just before each backward.</summary>
    Selective,

    /// <summary>Checkpoint every K sub-layers: keep the residual stream x only at segment starts, recompute each segment's forward during the backward pass. The last segment keeps its tapes (its backward follows at once).</summary>
    Every,

    /// <summary>Binomial checkpointing (<see cref="Revolve"/>) with S snapshot slots of the residual stream: the fewest recomputed sub-layer forwards for that many slots.</summary>
    Binomial,

    /// <summary>For a memory budget, the plan with the least recompute that fits.</summary>
    Auto,
}

/// <summary>
/// Which activations a step keeps and which it recomputes. Text form (the CLI's <c>--memory</c>, checkpoints):
/// <c>store</c>, <c>selective</c>, <c>every:K</c>, <c>binomial:S</c>, <c>auto</c>.
/// </summary>
[JsonConverter(typeof(MemoryPolicyJsonConverter))]
public sealed record MemoryPolicy
{
    private MemoryPolicy(MemoryPolicyKind kind, int parameter)
    {
        Kind = kind;
        Parameter = parameter;
    }

    /// <summary>The family.</summary>
    public MemoryPolicyKind Kind { get; }

    /// <summary>K of <c>every:K</c>, S of <c>binomial:S</c>; 0 for the others.</summary>
    public int Parameter { get; }

    /// <summary>Keep everything.</summary>
    public static MemoryPolicy Store { get; } = new(MemoryPolicyKind.Store, 0);

    /// <summary>Keep GEMM outputs, recompute norms and activations.</summary>
    public static MemoryPolicy Selective { get; } = new(MemoryPolicyKind.Selective, 0);

    /// <summary>Choose for a budget.</summary>
    public static MemoryPolicy Auto { get; } = new(MemoryPolicyKind.Auto, 0);

    /// <summary>Checkpoint every <paramref name="k"/> sub-layers (k ≥ 1).</summary>
    public static MemoryPolicy Every(int k)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(k);
        return new(MemoryPolicyKind.Every, k);
    }

    /// <summary>Binomial checkpointing with <paramref name="slots"/> slots (slots ≥ 1; the slot holding the embedding output counts).</summary>
    public static MemoryPolicy Binomial(int slots)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(slots);
        return new(MemoryPolicyKind.Binomial, slots);
    }

    /// <summary>Reads the text form; throws <see cref="ArgumentException"/> naming the accepted forms.</summary>
    public static MemoryPolicy Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var trimmed = text.Trim().ToLowerInvariant();
        var colon = trimmed.IndexOf(':', StringComparison.Ordinal);
        var name = colon < 0 ? trimmed : trimmed[..colon];
        var argument = colon < 0 ? null : trimmed[(colon + 1)..];
        int? number = argument is not null && int.TryParse(argument, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0 ? n : null;
        return (name, argument, number) switch
        {
            ("store", null, _) => Store,
            ("selective", null, _) => Selective,
            ("auto", null, _) => Auto,
            ("every", not null, { } k) => Every(k),
            ("binomial", not null, { } s) => Binomial(s),
            _ => throw new ArgumentException($"Unknown memory policy '{text}': use store, selective, every:K, binomial:S (K, S positive integers) or auto.", nameof(text)),
        };
    }

    /// <inheritdoc />
    public override string ToString() => Kind switch
    {
        MemoryPolicyKind.Every => $"every:{Parameter}",
        MemoryPolicyKind.Binomial => $"binomial:{Parameter}",
        _ => Kind.ToString().ToLowerInvariant(),
    };
}

/// <summary>Writes a <see cref="MemoryPolicy"/> as its text form.</summary>
internal sealed class MemoryPolicyJsonConverter : JsonConverter<MemoryPolicy>
{
    public override MemoryPolicy Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        try
        {
            return MemoryPolicy.Parse(reader.GetString() ?? throw new JsonException("A memory policy is a string."));
        }
        catch (ArgumentException e)
        {
            throw new JsonException(e.Message, e);
        }
    }

    public override void Write(Utf8JsonWriter writer, MemoryPolicy value, JsonSerializerOptions options) => writer.WriteStringValue(value.ToString());
}
