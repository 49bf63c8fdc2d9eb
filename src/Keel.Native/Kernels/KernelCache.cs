using System.Security.Cryptography;
using System.Text;

namespace Keel.Native.Kernels;

/// <summary>
/// A content-addressed folder of compiled kernel images (CUBINs, emulator shared objects). An entry's name is
/// a hash of everything that determines its bytes (source, headers, options, target and compiler version), so
/// a stale entry is never found, only a missing one.
/// <para>
/// Safe under concurrency and crashes: an entry is written to a private temporary file and renamed into
/// place (atomic on POSIX file systems), so readers see either nothing or a complete file; two processes
/// compiling the same kernel both rename identical bytes. Each entry starts with a SHA-256 of its payload;
/// a truncated or corrupt entry fails that check, is deleted and reported as a miss, and the caller
/// recompiles.
/// </para>
/// </summary>
public sealed class KernelCache
{
    private static readonly byte[] Magic = "KEELIMG1"u8.ToArray();
    private const int HeaderBytes = 8 + 32;

    /// <summary>Uses <paramref name="folder"/>, creating it if needed.</summary>
    public KernelCache(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        Folder = Path.GetFullPath(folder);
    }

    /// <summary>
    /// The default cache: <c>KEEL_KERNEL_CACHE</c> if set, else <c>$XDG_CACHE_HOME/keel/kernels</c>, else
    /// <c>~/.cache/keel/kernels</c> (the local application-data folder where there is no home).
    /// </summary>
    public static KernelCache Default { get; } = new(DefaultFolder());

    /// <summary>The folder entries live in.</summary>
    public string Folder { get; }

    /// <summary>
    /// The key of an image built from <paramref name="parts"/>: a hex SHA-256 over the parts, each
    /// length-prefixed so that no two different part lists collide by concatenation.
    /// </summary>
    public static string KeyOf(IEnumerable<string> parts)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var part in parts)
        {
            var bytes = Encoding.UTF8.GetBytes(part);
            hash.AppendData(BitConverter.GetBytes(bytes.Length));
            hash.AppendData(bytes);
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>The path an entry named <paramref name="name"/> with <paramref name="key"/> lives at.</summary>
    public string PathOf(string name, string key, string extension) =>
        Path.Combine(Folder, $"{name}-{key[..16]}{extension}");

    /// <summary>Reads the entry at <paramref name="path"/>; false (and the file removed) when missing or corrupt.</summary>
    public bool TryRead(string path, out byte[] payload)
    {
        payload = [];
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (FileNotFoundException)
        {
            return false;
        }
        catch (DirectoryNotFoundException)
        {
            return false;
        }
        if (bytes.Length < HeaderBytes || !bytes.AsSpan(0, 8).SequenceEqual(Magic)
            || !SHA256.HashData(bytes.AsSpan(HeaderBytes)).AsSpan().SequenceEqual(bytes.AsSpan(8, 32)))
        {
            TryDelete(path);
            return false;
        }
        payload = bytes[HeaderBytes..];
        return true;
    }

    /// <summary>Writes <paramref name="payload"/> to <paramref name="path"/> atomically.</summary>
    public void Write(string path, ReadOnlySpan<byte> payload)
    {
        Directory.CreateDirectory(Folder);
        var temporary = $"{path}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write))
            {
                stream.Write(Magic);
                stream.Write(SHA256.HashData(payload));
                stream.Write(payload);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, path, overwrite: true);
        }
        finally
        {
            TryDelete(temporary);
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
            // Another process may hold or have replaced it; a leftover temporary file is harmless.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    private static string DefaultFolder()
    {
        if (Environment.GetEnvironmentVariable("KEEL_KERNEL_CACHE") is { Length: > 0 } explicitFolder) return explicitFolder;
        if (Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg) return Path.Combine(xdg, "keel", "kernels");
        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        return home.Length > 0
            ? Path.Combine(home, ".cache", "keel", "kernels")
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData), "keel", "kernels");
    }
}
