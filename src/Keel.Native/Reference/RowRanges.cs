namespace Keel.Native.Reference;

/// <summary>
/// Runs independent rows of an op in contiguous ranges, on every core when the op is big enough to pay for the tasks
/// (a task costs microseconds; a row of a small op, nanoseconds). Each row is computed by one thread in its own fixed
/// order, so results never depend on the thread count.
/// </summary>
internal static class RowRanges
{
    /// <summary>Below about this many elementary operations (an exp or a multiply-add of a row each) the op stays on the calling thread.</summary>
    private const long SequentialWork = 1L << 15;

    /// <summary>Calls <paramref name="body"/>(first, end) over ranges that cover rows 0..<paramref name="rows"/> once.</summary>
    /// <param name="rows">Rows of the op.</param>
    /// <param name="workPerRow">Elementary operations per row, to decide whether threads pay.</param>
    /// <param name="body">Computes rows [first, end).</param>
    public static void For(int rows, long workPerRow, Action<int, int> body)
    {
        var chunks = rows * workPerRow < SequentialWork ? 1 : Math.Min(rows, 4 * Environment.ProcessorCount);
        if (chunks <= 1)
        {
            if (rows > 0) body(0, rows);
            return;
        }
        Parallel.For(0, chunks, chunk => body((int)((long)chunk * rows / chunks), (int)((long)(chunk + 1) * rows / chunks)));
    }
}
