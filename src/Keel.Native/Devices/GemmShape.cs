namespace Keel.Native.Devices;

/// <summary>The m, n, k of a row-major GEMM read off its tensors, checked for consistency.</summary>
internal static class GemmShape
{
    /// <summary>op(a) [m, k] · op(b) [k, n] = c [m, n]; leading dimensions of each tensor fold into its rows.</summary>
    /// <exception cref="ArgumentException">The inner dimensions or c's shape disagree, or a size exceeds int.</exception>
    public static (int M, int N, int K) Of(Tensor a, bool transposeA, Tensor b, bool transposeB, Tensor c)
    {
        var (aRows, aCols) = Matrix(a, nameof(a));
        var (bRows, bCols) = Matrix(b, nameof(b));
        var (cRows, cCols) = Matrix(c, nameof(c));
        var (m, k) = transposeA ? (aCols, aRows) : (aRows, aCols);
        var (kb, n) = transposeB ? (bCols, bRows) : (bRows, bCols);
        if (k != kb)
            throw new ArgumentException($"op(a) is [{m}, {k}] but op(b) is [{kb}, {n}]: the inner dimensions differ.", nameof(b));
        if (cRows != m || cCols != n)
            throw new ArgumentException($"c is [{cRows}, {cCols}]; op(a)·op(b) is [{m}, {n}].", nameof(c));
        return (checked((int)m), checked((int)n), checked((int)k));
    }

    private static (long Rows, long Columns) Matrix(Tensor tensor, string name) =>
        tensor.Shape.Rank >= 1 ? (tensor.Shape.Rank == 1 ? 1 : tensor.Shape.Rows, tensor.Shape.Last)
                               : throw new ArgumentException($"{name} has no shape.", name);
}
