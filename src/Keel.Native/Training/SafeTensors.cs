using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Keel.Native.Numerics;

namespace Keel.Native.Training;

/// <summary>One tensor of a safetensors file: element type, shape and little-endian bytes.</summary>
/// <param name="DType">Float32, Float64, BFloat16 or Int32.</param>
/// <param name="Shape">Row-major extents.</param>
/// <param name="Data">The raw bytes.</param>
public sealed record SafeTensor(DType DType, long[] Shape, byte[] Data)
{
    /// <summary>The elements as floats (Float32 only).</summary>
    public float[] ToFloats() => DType == DType.Float32 ? System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(Data).ToArray()
        : throw new InvalidDataException($"The tensor is {DType}, not Float32.");

    /// <summary>The elements as doubles (Float32 widened, or Float64).</summary>
    public double[] ToDoubles() => DType switch
    {
        DType.Float64 => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, double>(Data).ToArray(),
        DType.Float32 => Array.ConvertAll(ToFloats(), v => (double)v),
        _ => throw new InvalidDataException($"The tensor is {DType}, not floating point."),
    };
}

/// <summary>
/// The safetensors format: an 8-byte little-endian header length, a JSON header mapping each tensor name to
/// its dtype, shape and [begin, end) byte range in the data that follows, an optional <c>__metadata__</c> map of
/// strings, then the data. Files are written atomically: to a temporary name, flushed, then renamed over the target.
/// </summary>
public static class SafeTensors
{
    private const string MetadataKey = "__metadata__";

    /// <summary>Writes <paramref name="tensors"/> (in the given order) and <paramref name="metadata"/> to <paramref name="path"/>, atomically.</summary>
    public static void Write(string path, IReadOnlyList<(string Name, SafeTensor Tensor)> tensors, IReadOnlyDictionary<string, string> metadata)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(metadata);
        var header = new JsonObject();
        if (metadata.Count > 0)
        {
            var meta = new JsonObject();
            foreach (var (key, value) in metadata) meta[key] = value;
            header[MetadataKey] = meta;
        }
        long offset = 0;
        foreach (var (name, tensor) in tensors)
        {
            var expected = tensor.Shape.Aggregate(1L, (a, b) => a * b) * tensor.DType.SizeOf();
            if (expected != tensor.Data.Length) throw new ArgumentException($"Tensor {name} has {tensor.Data.Length} bytes; its shape needs {expected}.", nameof(tensors));
            header[name] = new JsonObject
            {
                ["dtype"] = Name(tensor.DType),
                ["shape"] = new JsonArray(tensor.Shape.Select(d => (JsonNode)d).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + tensor.Data.Length),
            };
            offset += tensor.Data.Length;
        }
        var json = Encoding.UTF8.GetBytes(header.ToJsonString());
        // Pad the header with spaces so the data starts 8-byte aligned, as the reference implementation does.
        var padded = (json.Length + 7) / 8 * 8;
        AtomicFile.Write(path, stream =>
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)padded);
            stream.Write(length);
            stream.Write(json);
            for (var i = json.Length; i < padded; i++) stream.WriteByte((byte)' ');
            foreach (var (_, tensor) in tensors) stream.Write(tensor.Data);
        });
    }

    /// <summary>Reads every tensor and the metadata of <paramref name="path"/>.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not a valid safetensors file; the message gives the path and why.</exception>
    public static (Dictionary<string, SafeTensor> Tensors, Dictionary<string, string> Metadata) Read(string path)
    {
        var full = Path.GetFullPath(path);
        if (!File.Exists(full)) throw new FileNotFoundException($"{full} does not exist.", full);
        var bytes = File.ReadAllBytes(full);
        try
        {
            if (bytes.Length < 8) throw new InvalidDataException("shorter than the 8-byte header length");
            var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
            if (headerLength > (ulong)(bytes.Length - 8)) throw new InvalidDataException($"the header claims {headerLength} bytes but the file has {bytes.Length - 8} after the length");
            var dataStart = 8 + (int)headerLength;
            var header = JsonNode.Parse(bytes.AsSpan(8, (int)headerLength)) as JsonObject ?? throw new InvalidDataException("the header is not a JSON object");
            var tensors = new Dictionary<string, SafeTensor>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var (name, node) in header)
            {
                if (name == MetadataKey)
                {
                    foreach (var (key, value) in node as JsonObject ?? throw new InvalidDataException("__metadata__ is not an object"))
                        metadata[key] = value?.GetValue<string>() ?? "";
                    continue;
                }
                var entry = node as JsonObject ?? throw new InvalidDataException($"entry {name} is not an object");
                var dtype = Parse(entry["dtype"]?.GetValue<string>() ?? throw new InvalidDataException($"{name} has no dtype"), name);
                var shape = (entry["shape"] as JsonArray ?? throw new InvalidDataException($"{name} has no shape")).Select(d => d!.GetValue<long>()).ToArray();
                var offsets = (entry["data_offsets"] as JsonArray ?? throw new InvalidDataException($"{name} has no data_offsets")).Select(d => d!.GetValue<long>()).ToArray();
                if (offsets.Length != 2 || offsets[0] < 0 || offsets[1] < offsets[0] || dataStart + offsets[1] > bytes.Length)
                    throw new InvalidDataException($"{name}'s data_offsets [{string.Join(", ", offsets)}] lie outside the file's {bytes.Length - dataStart} data bytes (truncated?)");
                var expected = shape.Aggregate(1L, (a, b) => a * b) * dtype.SizeOf();
                if (offsets[1] - offsets[0] != expected) throw new InvalidDataException($"{name} holds {offsets[1] - offsets[0]} bytes; its shape needs {expected}");
                tensors[name] = new SafeTensor(dtype, shape, bytes.AsSpan(dataStart + (int)offsets[0], (int)expected).ToArray());
            }
            return (tensors, metadata);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException or InvalidDataException)
        {
            throw new InvalidDataException($"{full} is not a valid safetensors file: {e.Message}.", e);
        }
    }

    private static string Name(DType dtype) => dtype switch
    {
        DType.Float32 => "F32",
        DType.Float64 => "F64",
        DType.BFloat16 => "BF16",
        DType.Int32 => "I32",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null),
    };

    private static DType Parse(string name, string tensor) => name switch
    {
        "F32" => DType.Float32,
        "F64" => DType.Float64,
        "BF16" => DType.BFloat16,
        "I32" => DType.Int32,
        _ => throw new InvalidDataException($"{tensor} has dtype {name}, which this reader does not take (F32, F64, BF16, I32)"),
    };
}

/// <summary>Writes a file so that readers see either the old content or the complete new one, never a part.</summary>
public static class AtomicFile
{
    /// <summary>Writes through <paramref name="write"/> to a temporary file beside <paramref name="path"/>, flushes it to disk, then renames it over <paramref name="path"/>.</summary>
    public static void Write(string path, Action<Stream> write)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(write);
        var temporary = path + ".tmp-" + Environment.ProcessId;
        try
        {
            using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, path, overwrite: true);
        }
        catch
        {
            File.Delete(temporary);
            throw;
        }
    }

    /// <summary>Writes <paramref name="text"/> as UTF-8, atomically.</summary>
    public static void WriteText(string path, string text) => Write(path, stream => stream.Write(Encoding.UTF8.GetBytes(text)));
}
