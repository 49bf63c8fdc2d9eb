using System.Buffers.Binary;
using System.Text;

namespace Keel.Native.Kernels;

/// <summary>The resources one compiled entry point needs per thread and per block, as ptxas decided them.</summary>
/// <param name="Name">The entry point.</param>
/// <param name="Registers">Registers per thread.</param>
/// <param name="LocalBytes">Local memory per thread (the stack frame: spills and local arrays). Non-zero in a hot kernel is worth a look.</param>
/// <param name="StaticSharedBytes">Statically declared shared memory per block.</param>
public sealed record KernelResourceUsage(string Name, int Registers, int LocalBytes, int StaticSharedBytes);

/// <summary>
/// Reads resource usage out of a CUBIN (an ELF64 image) without a GPU or the CUDA toolkit, so spills show up
/// on any machine. Per entry point <c>f</c>: the register count is the <c>EIATTR_REGCOUNT</c> attribute of the
/// <c>.nv.info</c> section (older images keep it in bits 24..31 of <c>.text.f</c>'s <c>sh_info</c>); the local
/// memory per thread is <c>EIATTR_FRAME_SIZE</c>; static shared memory is the size of <c>.nv.shared.f</c>,
/// less the 1 KB that sm_90 images fold into that section for the system's per-block reservation, so the
/// figures read the same as ptxas's <c>-v</c> report on every architecture.
/// </summary>
public static class CubinReader
{
    // EIATTR codes of the .nv.info attribute stream (each entry: format byte, attribute byte, then a value).
    private const byte AttrFrameSize = 0x11, AttrRegCount = 0x2f;
    private const byte FormatSizedValue = 0x04;
    private const int SystemReservedSharedBytes = 1024;

    /// <summary>
    /// The SM number (80, 90, ...) an image targets: the low byte of the ELF header's <c>e_flags</c> in the
    /// CUDA ELF ABI version 7 that NVRTC 11.8 through 12.x write; 0 for a layout this reader does not know.
    /// </summary>
    public static int ArchitectureOf(ReadOnlySpan<byte> cubin)
    {
        const byte CudaOsAbi = 0x33, KnownAbiVersion = 7;
        if (cubin.Length < 0x34 || cubin[7] != CudaOsAbi || cubin[8] != KnownAbiVersion) return 0;
        return (int)(BinaryPrimitives.ReadUInt32LittleEndian(cubin[0x30..]) & 0xFF);
    }

    /// <summary>The entry points of <paramref name="cubin"/> with their resource usage, sorted by name.</summary>
    /// <exception cref="InvalidDataException">The bytes are not a well-formed 64-bit little-endian ELF image.</exception>
    public static IReadOnlyList<KernelResourceUsage> Read(ReadOnlySpan<byte> cubin)
    {
        var sections = ReadSections(cubin);
        var symbols = ReadSymbols(cubin, sections);
        var reservedShared = ArchitectureOf(cubin) >= 90 ? SystemReservedSharedBytes : 0;
        var registers = new Dictionary<string, int>(StringComparer.Ordinal);
        var frames = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var info in sections.Where(s => s.Name == ".nv.info" || s.Name.StartsWith(".nv.info.", StringComparison.Ordinal)))
            ReadAttributes(Slice(cubin, info), symbols, registers, frames);

        var result = new List<KernelResourceUsage>();
        foreach (var text in sections.Where(s => s.Name.StartsWith(".text.", StringComparison.Ordinal)))
        {
            var name = text.Name[".text.".Length..];
            var regs = registers.TryGetValue(name, out var r) ? r : (int)(text.Info >> 24);
            var shared = (int)(sections.FirstOrDefault(s => s.Name == ".nv.shared." + name)?.Size ?? 0);
            result.Add(new KernelResourceUsage(name, regs, frames.GetValueOrDefault(name), Math.Max(0, shared - reservedShared)));
        }
        return result.OrderBy(r => r.Name, StringComparer.Ordinal).ToList();
    }

    private sealed record Section(string Name, uint Type, ulong Offset, ulong Size, uint Link, uint Info);

    private static List<Section> ReadSections(ReadOnlySpan<byte> elf)
    {
        if (elf.Length < 64 || !elf[..4].SequenceEqual("\u007fELF"u8) || elf[4] != 2 || elf[5] != 1)
            throw new InvalidDataException("Not a 64-bit little-endian ELF image.");
        var shoff = BinaryPrimitives.ReadUInt64LittleEndian(elf[0x28..]);
        var shentsize = BinaryPrimitives.ReadUInt16LittleEndian(elf[0x3A..]);
        var shnum = BinaryPrimitives.ReadUInt16LittleEndian(elf[0x3C..]);
        var shstrndx = BinaryPrimitives.ReadUInt16LittleEndian(elf[0x3E..]);
        if (shentsize < 64 || shoff + (ulong)shentsize * shnum > (ulong)elf.Length || shstrndx >= shnum)
            throw new InvalidDataException("ELF section table lies outside the image.");

        var raw = new List<(uint NameOffset, Section Section)>();
        for (var i = 0; i < shnum; i++)
        {
            var h = elf.Slice((int)shoff + i * shentsize, shentsize);
            var section = new Section("", BinaryPrimitives.ReadUInt32LittleEndian(h[4..]),
                BinaryPrimitives.ReadUInt64LittleEndian(h[0x18..]), BinaryPrimitives.ReadUInt64LittleEndian(h[0x20..]),
                BinaryPrimitives.ReadUInt32LittleEndian(h[0x28..]), BinaryPrimitives.ReadUInt32LittleEndian(h[0x2C..]));
            const uint NoBits = 8; // SHT_NOBITS (.nv.shared.*) occupies no bytes of the file.
            if (section.Type != NoBits && section.Offset + section.Size > (ulong)elf.Length)
                throw new InvalidDataException($"ELF section {i} lies outside the image.");
            raw.Add((BinaryPrimitives.ReadUInt32LittleEndian(h), section));
        }
        var names = Slice(elf, raw[shstrndx].Section);
        var named = new List<Section>(raw.Count);
        foreach (var (nameOffset, section) in raw) named.Add(section with { Name = CString(names, nameOffset) });
        return named;
    }

    private static List<string> ReadSymbols(ReadOnlySpan<byte> elf, List<Section> sections)
    {
        const uint SymTab = 2;
        var symtab = sections.FirstOrDefault(s => s.Type == SymTab);
        if (symtab is null) return [];
        if (symtab.Link >= sections.Count) throw new InvalidDataException("ELF symbol table names no string table.");
        var strings = Slice(elf, sections[(int)symtab.Link]);
        var entries = Slice(elf, symtab);
        var names = new List<string>();
        for (var offset = 0; offset + 24 <= entries.Length; offset += 24)
            names.Add(CString(strings, BinaryPrimitives.ReadUInt32LittleEndian(entries[offset..])));
        return names;
    }

    private static void ReadAttributes(ReadOnlySpan<byte> stream, List<string> symbols,
                                       Dictionary<string, int> registers, Dictionary<string, int> frames)
    {
        var position = 0;
        while (position + 4 <= stream.Length)
        {
            var format = stream[position];
            var attribute = stream[position + 1];
            if (format != FormatSizedValue)
            {
                position += 4; // EIFMT_NVAL/BVAL/HVAL: a two-byte value follows the two header bytes.
                continue;
            }
            var size = BinaryPrimitives.ReadUInt16LittleEndian(stream[(position + 2)..]);
            var value = stream.Slice(position + 4, Math.Min(size, stream.Length - position - 4));
            if ((attribute == AttrRegCount || attribute == AttrFrameSize) && value.Length >= 8)
            {
                var symbol = BinaryPrimitives.ReadInt32LittleEndian(value);
                var amount = BinaryPrimitives.ReadInt32LittleEndian(value[4..]);
                if (symbol >= 0 && symbol < symbols.Count)
                    (attribute == AttrRegCount ? registers : frames)[symbols[symbol]] = amount;
            }
            position += 4 + size;
        }
    }

    private static ReadOnlySpan<byte> Slice(ReadOnlySpan<byte> elf, Section section) =>
        elf.Slice((int)section.Offset, (int)section.Size);

    private static string CString(ReadOnlySpan<byte> table, uint offset)
    {
        if (offset >= table.Length) throw new InvalidDataException("ELF name offset lies outside its string table.");
        var rest = table[(int)offset..];
        var end = rest.IndexOf((byte)0);
        return Encoding.ASCII.GetString(end < 0 ? rest : rest[..end]);
    }
}
