using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Keel.Native.Numerics;

namespace Keel.Native.Training;

/// <summary>One tensor of a safetensors header: name, element type, shape and its [Begin, End) byte range in the data.</summary>
/// <param name="Name">The tensor's name.</param>
/// <param name="DType">Float32, Float64, BFloat16 or Int32.</param>
/// <param name="Shape">Row-major extents.</param>
/// <param name="Begin">First byte, counted from the start of the data (after the header).</param>
/// <param name="End">One past the last byte.</param>
public sealed record SafeTensorInfo(string Name, DType DType, long[] Shape, long Begin, long End)
{
    /// <summary>Bytes the tensor occupies.</summary>
    public long ByteLength => End - Begin;

    /// <summary>The product of the extents.</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// The safetensors format: an 8-byte little-endian header length, a JSON header mapping each tensor name to its
/// dtype, shape and [begin, end) byte range in the data that follows, an optional <c>__metadata__</c> map of strings,
/// then the data. Tensors are streamed one at a time in both directions, so a file may be far larger than any one
/// host array. Files are written atomically: to a temporary name, flushed, then renamed over the target.
/// </summary>
public static class SafeTensors
{
    internal const string MetadataKey = "__metadata__";

    /// <summary>The largest header a reader accepts (the format's own limit).</summary>
    internal const long MaxHeaderBytes = 100_000_000;

    /// <summary>
    /// Writes the header of <paramref name="tensors"/> (their data laid out back to back in the given order) and
    /// <paramref name="metadata"/>, then each tensor's bytes through <paramref name="writeData"/>, atomically.
    /// </summary>
    /// <param name="path">The file to write (replaced when the new one is complete).</param>
    /// <param name="tensors">Name, element type and shape of each tensor; their byte ranges are assigned here.</param>
    /// <param name="metadata">String pairs for <c>__metadata__</c>; may be empty.</param>
    /// <param name="writeData">Called once per tensor, in order, with its index; writes exactly its bytes, little-endian.</param>
    /// <exception cref="InvalidOperationException"><paramref name="writeData"/> wrote a different number of bytes.</exception>
    public static void Write(string path, IReadOnlyList<(string Name, DType DType, long[] Shape)> tensors,
                             IReadOnlyDictionary<string, string> metadata, Action<int, Stream> writeData)
    {
        ArgumentNullException.ThrowIfNull(writeData);
        var layout = SafeTensorsLayout.Of(tensors, metadata);
        AtomicFile.Write(path, stream =>
        {
            stream.Write(layout.Header);
            for (var i = 0; i < tensors.Count; i++)
            {
                var start = stream.Position;
                writeData(i, stream);
                if (stream.Position - start != layout.ByteLength(i))
                    throw new InvalidOperationException($"{stream.Position - start} bytes were written for tensor {tensors[i].Name}; its shape needs {layout.ByteLength(i)}.");
            }
        });
    }

    internal static string Name(DType dtype) => dtype switch
    {
        DType.Float32 => "F32",
        DType.Float64 => "F64",
        DType.BFloat16 => "BF16",
        DType.Int32 => "I32",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, null),
    };

    internal static DType Parse(string name, string tensor) => name switch
    {
        "F32" => DType.Float32,
        "F64" => DType.Float64,
        "BF16" => DType.BFloat16,
        "I32" => DType.Int32,
        _ => throw new InvalidDataException($"{tensor} has dtype {name}, which this reader does not take (F32, F64, BF16, I32)"),
    };
}

/// <summary>
/// Where everything of a safetensors file goes: the header bytes (length, JSON, padding), and each tensor's place in the
/// data after it. Lets several writers fill one file's tensors, or parts of them, at known offsets
/// (<see cref="SafeTensorsLayout.Create"/>, <see cref="SafeTensorsLayout.OpenForWriting"/>).
/// </summary>
public sealed class SafeTensorsLayout
{
    private readonly long[] _begin;

    private SafeTensorsLayout(byte[] header, long[] begin)
    {
        Header = header;
        _begin = begin;
    }

    /// <summary>The bytes before the data: the 8-byte length, the JSON header and its padding to 8 bytes.</summary>
    public byte[] Header { get; }

    /// <summary>The file's total size.</summary>
    public long FileLength => Header.Length + _begin[^1];

    /// <summary>Bytes of tensor <paramref name="index"/>.</summary>
    public long ByteLength(int index) => _begin[index + 1] - _begin[index];

    /// <summary>Where tensor <paramref name="index"/>'s bytes start in the file.</summary>
    public long FileOffset(int index) => Header.Length + _begin[index];

    /// <summary>The layout of <paramref name="tensors"/>, back to back in the given order, with <paramref name="metadata"/>.</summary>
    public static SafeTensorsLayout Of(IReadOnlyList<(string Name, DType DType, long[] Shape)> tensors, IReadOnlyDictionary<string, string> metadata)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(metadata);
        var header = new JsonObject();
        if (metadata.Count > 0)
        {
            var meta = new JsonObject();
            foreach (var (key, value) in metadata) meta[key] = value;
            header[SafeTensors.MetadataKey] = meta;
        }
        var begin = new long[tensors.Count + 1];
        for (var i = 0; i < tensors.Count; i++)
        {
            var (name, dtype, shape) = tensors[i];
            begin[i + 1] = begin[i] + shape.Aggregate(1L, (a, b) => a * b) * dtype.SizeOf();
            header[name] = new JsonObject
            {
                ["dtype"] = SafeTensors.Name(dtype),
                ["shape"] = new JsonArray([.. shape.Select(d => (JsonNode)d)]),
                ["data_offsets"] = new JsonArray(begin[i], begin[i + 1]),
            };
        }
        var json = Encoding.UTF8.GetBytes(header.ToJsonString());
        // Pad the header with spaces so the data starts 8-byte aligned, as the reference implementation does.
        var padded = (json.Length + 7) / 8 * 8;
        var bytes = new byte[8 + padded];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)padded);
        json.CopyTo(bytes, 8);
        bytes.AsSpan(8 + json.Length).Fill((byte)' ');
        return new SafeTensorsLayout(bytes, begin);
    }

    /// <summary>Creates <paramref name="path"/> at its full size with the header written and the data zero, flushed to disk, for writers to fill.</summary>
    public void Create(string path)
    {
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.ReadWrite);
        stream.Write(Header);
        stream.SetLength(FileLength);
        stream.Flush(flushToDisk: true);
    }

    /// <summary>
    /// Opens the file <see cref="Create"/> made, for one writer among several (each writes its own bytes; none truncates).
    /// Flush it to disk (<see cref="FileStream.Flush(bool)"/>) before others read.
    /// </summary>
    public static FileStream OpenForWriting(string path) => new(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite, 1 << 20);
}

/// <summary>
/// An open safetensors file: its header is read and checked when it is opened (every range inside the file, every
/// size matching its shape), and each tensor's bytes are read on demand.
/// </summary>
public sealed class SafeTensorsFile : IDisposable
{
    private readonly FileStream _stream;
    private readonly long _dataStart;

    private SafeTensorsFile(string path, FileStream stream, long dataStart, Dictionary<string, SafeTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Path = path;
        _stream = stream;
        _dataStart = dataStart;
        Tensors = tensors;
        Metadata = metadata;
    }

    /// <summary>The file's full path.</summary>
    public string Path { get; }

    /// <summary>Every tensor of the header, by name.</summary>
    public IReadOnlyDictionary<string, SafeTensorInfo> Tensors { get; }

    /// <summary>The <c>__metadata__</c> strings (empty when the file has none).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Opens <paramref name="path"/> and checks its header.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not a valid safetensors file; the message gives the path and why.</exception>
    public static SafeTensorsFile Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var full = System.IO.Path.GetFullPath(path);
        if (!File.Exists(full)) throw new FileNotFoundException($"{full} does not exist.", full);
        var stream = new FileStream(full, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        try
        {
            var (dataStart, tensors, metadata) = ReadHeader(stream);
            return new SafeTensorsFile(full, stream, dataStart, tensors, metadata);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException or InvalidDataException or EndOfStreamException)
        {
            stream.Dispose();
            throw new InvalidDataException($"{full} is not a valid safetensors file: {e.Message}.", e);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>Reads the bytes of <paramref name="tensor"/> (an entry of <see cref="Tensors"/>) into <paramref name="destination"/>, which must be exactly that long.</summary>
    public void Read(SafeTensorInfo tensor, Span<byte> destination)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (destination.Length != tensor.ByteLength)
            throw new ArgumentException($"{destination.Length} bytes given for {tensor.Name}, which holds {tensor.ByteLength}.", nameof(destination));
        Read(tensor, 0, destination);
    }

    /// <summary>Reads <paramref name="destination"/>.Length bytes of <paramref name="tensor"/> from its byte <paramref name="offset"/> on.</summary>
    public void Read(SafeTensorInfo tensor, long offset, Span<byte> destination)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (offset < 0 || offset + destination.Length > tensor.ByteLength)
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"Bytes [{offset}, {offset + destination.Length}) lie outside {tensor.Name}'s {tensor.ByteLength}.");
        _stream.Position = _dataStart + tensor.Begin + offset;
        _stream.ReadExactly(destination);
    }

    /// <inheritdoc />
    public void Dispose() => _stream.Dispose();

    private static (long DataStart, Dictionary<string, SafeTensorInfo> Tensors, Dictionary<string, string> Metadata) ReadHeader(FileStream stream)
    {
        Span<byte> lengthBytes = stackalloc byte[8];
        if (stream.Length < 8) throw new InvalidDataException("shorter than the 8-byte header length");
        stream.ReadExactly(lengthBytes);
        var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (headerLength > (ulong)(stream.Length - 8)) throw new InvalidDataException($"the header claims {headerLength} bytes but the file has {stream.Length - 8} after the length");
        if (headerLength > SafeTensors.MaxHeaderBytes) throw new InvalidDataException($"the header claims {headerLength} bytes, more than the format's limit of {SafeTensors.MaxHeaderBytes}");
        var headerBytes = new byte[headerLength];
        stream.ReadExactly(headerBytes);
        var dataStart = 8 + (long)headerLength;
        var dataLength = stream.Length - dataStart;
        var header = JsonNode.Parse(headerBytes) as JsonObject ?? throw new InvalidDataException("the header is not a JSON object");
        var tensors = new Dictionary<string, SafeTensorInfo>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, node) in header)
        {
            if (name == SafeTensors.MetadataKey)
            {
                foreach (var (key, value) in node as JsonObject ?? throw new InvalidDataException("__metadata__ is not an object"))
                    metadata[key] = value?.GetValue<string>() ?? "";
                continue;
            }
            var entry = node as JsonObject ?? throw new InvalidDataException($"entry {name} is not an object");
            var dtype = SafeTensors.Parse(entry["dtype"]?.GetValue<string>() ?? throw new InvalidDataException($"{name} has no dtype"), name);
            var shape = (entry["shape"] as JsonArray ?? throw new InvalidDataException($"{name} has no shape")).Select(d => d!.GetValue<long>()).ToArray();
            if (shape.Any(d => d < 0)) throw new InvalidDataException($"{name} has a negative extent in its shape [{string.Join(", ", shape)}]");
            var offsets = (entry["data_offsets"] as JsonArray ?? throw new InvalidDataException($"{name} has no data_offsets")).Select(d => d!.GetValue<long>()).ToArray();
            if (offsets.Length != 2 || offsets[0] < 0 || offsets[1] < offsets[0] || offsets[1] > dataLength)
                throw new InvalidDataException($"{name}'s data_offsets [{string.Join(", ", offsets)}] lie outside the file's {dataLength} data bytes (truncated?)");
            var info = new SafeTensorInfo(name, dtype, shape, offsets[0], offsets[1]);
            if (info.ByteLength != info.ElementCount * dtype.SizeOf())
                throw new InvalidDataException($"{name} holds {info.ByteLength} bytes; its shape needs {info.ElementCount * dtype.SizeOf()}");
            tensors[name] = info;
        }
        return (dataStart, tensors, metadata);
    }
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
