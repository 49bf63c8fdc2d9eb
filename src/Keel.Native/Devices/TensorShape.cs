namespace Keel.Native.Devices;

/// <summary>The extents of a row-major tensor of rank 1 to 4, held inline (creating a shape allocates nothing).</summary>
public readonly struct TensorShape : IEquatable<TensorShape>
{
    private readonly long _d0, _d1, _d2, _d3;

    /// <summary>A vector of <paramref name="d0"/> elements.</summary>
    public TensorShape(long d0) : this(1, d0, 1, 1, 1) { }

    /// <summary>A [<paramref name="d0"/>, <paramref name="d1"/>] matrix.</summary>
    public TensorShape(long d0, long d1) : this(2, d0, d1, 1, 1) { }

    /// <summary>A rank-3 shape.</summary>
    public TensorShape(long d0, long d1, long d2) : this(3, d0, d1, d2, 1) { }

    /// <summary>A rank-4 shape.</summary>
    public TensorShape(long d0, long d1, long d2, long d3) : this(4, d0, d1, d2, d3) { }

    private TensorShape(int rank, long d0, long d1, long d2, long d3)
    {
        if (d0 < 0 || d1 < 0 || d2 < 0 || d3 < 0)
            throw new ArgumentOutOfRangeException(nameof(d0), "Tensor extents must not be negative.");
        Rank = rank;
        (_d0, _d1, _d2, _d3) = (d0, d1, d2, d3);
    }

    /// <summary>The number of dimensions (0 for the default shape, which has no elements).</summary>
    public int Rank { get; }

    /// <summary>Extent of dimension <paramref name="dimension"/>.</summary>
    public long this[int dimension] => (uint)dimension < (uint)Rank
        ? dimension switch { 0 => _d0, 1 => _d1, 2 => _d2, _ => _d3 }
        : throw new ArgumentOutOfRangeException(nameof(dimension), dimension, $"Rank is {Rank}.");

    /// <summary>The product of the extents.</summary>
    public long ElementCount => Rank == 0 ? 0 : _d0 * _d1 * _d2 * _d3;

    /// <summary>The extent of the last dimension (the contiguous one).</summary>
    public long Last => this[Rank - 1];

    /// <summary>The product of all extents but the last: the number of rows when viewed as a matrix.</summary>
    public long Rows => ElementCount / Math.Max(1, Last);

    /// <inheritdoc />
    public bool Equals(TensorShape other) =>
        Rank == other.Rank && _d0 == other._d0 && _d1 == other._d1 && _d2 == other._d2 && _d3 == other._d3;

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is TensorShape other && Equals(other);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(Rank, _d0, _d1, _d2, _d3);

    /// <summary>Equal ranks and extents.</summary>
    public static bool operator ==(TensorShape left, TensorShape right) => left.Equals(right);

    /// <summary>Different ranks or extents.</summary>
    public static bool operator !=(TensorShape left, TensorShape right) => !left.Equals(right);

    /// <inheritdoc />
    public override string ToString() => Rank switch
    {
        0 => "[]",
        1 => $"[{_d0}]",
        2 => $"[{_d0}, {_d1}]",
        3 => $"[{_d0}, {_d1}, {_d2}]",
        _ => $"[{_d0}, {_d1}, {_d2}, {_d3}]",
    };
}
