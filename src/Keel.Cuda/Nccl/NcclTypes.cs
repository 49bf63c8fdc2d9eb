using System.Runtime.InteropServices;

namespace Keel.Cuda.Nccl;

/// <summary>
/// <c>ncclUniqueId</c>: 128 opaque bytes that rank 0 makes (<see cref="NcclCommunicator.CreateUniqueId"/>) and every rank
/// passes to <see cref="NcclCommunicator.InitRank"/>; they reach the other ranks by some other channel (MPI here). Passed
/// by value, as nccl.h declares it.
/// </summary>
[StructLayout(LayoutKind.Sequential, Size = Bytes)]
public unsafe struct NcclUniqueId
{
    /// <summary><c>NCCL_UNIQUE_ID_BYTES</c>.</summary>
    public const int Bytes = 128;

    private fixed byte _bytes[Bytes];

    /// <summary>The id from its bytes (as another rank's <see cref="CopyTo"/> wrote them).</summary>
    public static NcclUniqueId FromBytes(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length != Bytes) throw new ArgumentException($"An NCCL unique id is {Bytes} bytes; {bytes.Length} given.", nameof(bytes));
        var id = default(NcclUniqueId);
        bytes.CopyTo(new Span<byte>(id._bytes, Bytes));
        return id;
    }

    /// <summary>Copies the id's bytes into <paramref name="destination"/> (at least <see cref="Bytes"/> long).</summary>
    public readonly void CopyTo(Span<byte> destination)
    {
        fixed (byte* p = _bytes) new ReadOnlySpan<byte>(p, Bytes).CopyTo(destination);
    }
}

/// <summary><c>ncclDataType_t</c> (nccl.h; the values have not changed since NCCL 2.0, bf16 since 2.10).</summary>
public enum NcclDataType
{
    /// <summary><c>ncclInt8</c>: also bytes that are moved, never reduced.</summary>
    Int8 = 0,

    /// <summary><c>ncclInt32</c>.</summary>
    Int32 = 2,

    /// <summary><c>ncclFloat32</c>.</summary>
    Float32 = 7,

    /// <summary><c>ncclFloat64</c>.</summary>
    Float64 = 8,

    /// <summary><c>ncclBfloat16</c>.</summary>
    BFloat16 = 9,
}

/// <summary><c>ncclRedOp_t</c>'s built-in reductions used here.</summary>
public enum NcclReduction
{
    /// <summary><c>ncclSum</c>.</summary>
    Sum = 0,

    /// <summary><c>ncclMax</c>.</summary>
    Max = 2,
}
