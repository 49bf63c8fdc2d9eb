using System.Numerics;
using Keel.Native.Numerics;

namespace Keel.Native.Reference;

/// <summary>
/// General matrix multiply, C[m,n] = alpha * op(A) · op(B) + beta * C, row-major. op(A) is [m,k]: A is stored
/// [m,k], or [k,m] when <c>transposeA</c>; op(B) is [k,n]: B is stored [k,n], or [n,k] when <c>transposeB</c>.
/// A linear layer with W stored [out, in] uses Y = X·W^T (NT), dX = dY·W (NN) and dW += dY^T·X (TN, beta = 1).
/// <para>
/// The float and bf16 overloads are cache-blocked, vectorized (Vector256 + FMA where the CPU has it, a scalar
/// fallback otherwise) and run on every core. They accumulate in fp32 and are deterministic: each element is the
/// sequential chain acc = fma(a[i,p], b[p,j], acc), p = 0..k-1, from acc = 0, whatever the thread count; the
/// result is then alpha·acc when beta = 0 (C is not read, so it may hold garbage) and fma(beta, C, alpha·acc)
/// otherwise. With bf16 operands that is what a cuBLAS bf16 GEMM with fp32 compute returns, up to summation order.
/// <see cref="MultiplyNaive{T}"/> is the plain triple loop in fp64, the oracle for tests.
/// </para>
/// </summary>
public static class Gemm
{
    /// <summary>C = alpha · op(A) · op(B) + beta · C in fp32 (blocked, vectorized, parallel).</summary>
    /// <param name="transposeA">A is stored [k, m] (op(A) = A^T) instead of [m, k].</param>
    /// <param name="transposeB">B is stored [n, k] (op(B) = B^T) instead of [k, n].</param>
    /// <param name="m">Rows of C and of op(A).</param>
    /// <param name="n">Columns of C and of op(B).</param>
    /// <param name="k">The shared dimension.</param>
    /// <param name="alpha">Scale of the product.</param>
    /// <param name="a">A, m·k elements.</param>
    /// <param name="b">B, k·n elements.</param>
    /// <param name="beta">Scale of the old C; 0 means C is only written.</param>
    /// <param name="c">C [m, n]; must not overlap A or B.</param>
    /// <exception cref="ArgumentException">A size is negative, a span's length does not match its shape, or C overlaps A or B.</exception>
    public static unsafe void Multiply(bool transposeA, bool transposeB, int m, int n, int k, float alpha,
                                       ReadOnlySpan<float> a, ReadOnlySpan<float> b, float beta, Span<float> c)
    {
        Validate(transposeA, transposeB, m, n, k, a, b, c);
        fixed (float* pa = a, pb = b, pc = c)
            GemmEngine.Run(transposeA, transposeB, m, n, k, alpha, pa, pb, beta, pc);
    }

    /// <summary>C = alpha · op(A) · op(B) + beta · C with bf16 operands, fp32 accumulation and fp32 output.</summary>
    /// <inheritdoc cref="Multiply(bool, bool, int, int, int, float, ReadOnlySpan{float}, ReadOnlySpan{float}, float, Span{float})"/>
    public static unsafe void Multiply(bool transposeA, bool transposeB, int m, int n, int k, float alpha,
                                       ReadOnlySpan<BFloat16> a, ReadOnlySpan<BFloat16> b, float beta, Span<float> c)
    {
        Validate(transposeA, transposeB, m, n, k, a, b, c);
        fixed (BFloat16* pa = a, pb = b)
        fixed (float* pc = c)
            GemmEngine.Run(transposeA, transposeB, m, n, k, alpha, pa, pb, beta, pc);
    }

    /// <summary>
    /// C = alpha · op(A) · op(B) + beta · C with bf16 operands, fp32 accumulation and bf16 output: the fp32 result
    /// (with the old C widened exactly) is rounded to nearest, ties to even.
    /// </summary>
    /// <inheritdoc cref="Multiply(bool, bool, int, int, int, float, ReadOnlySpan{float}, ReadOnlySpan{float}, float, Span{float})"/>
    public static unsafe void Multiply(bool transposeA, bool transposeB, int m, int n, int k, float alpha,
                                       ReadOnlySpan<BFloat16> a, ReadOnlySpan<BFloat16> b, float beta, Span<BFloat16> c)
    {
        Validate(transposeA, transposeB, m, n, k, a, b, c);
        fixed (BFloat16* pa = a, pb = b, pc = c)
            GemmEngine.Run(transposeA, transposeB, m, n, k, alpha, pa, pb, beta, pc);
    }

    /// <summary>
    /// The plain triple loop: C[i,j] = alpha · Σ_p op(A)[i,p]·op(B)[p,j] + beta · C[i,j], the sum in fp64 and in
    /// p order, rounded once to T. Single-threaded and slow: the oracle for tests (T = double) and a baseline.
    /// When beta = 0, C is not read.
    /// </summary>
    /// <inheritdoc cref="Multiply(bool, bool, int, int, int, float, ReadOnlySpan{float}, ReadOnlySpan{float}, float, Span{float})"/>
    public static void MultiplyNaive<T>(bool transposeA, bool transposeB, int m, int n, int k, T alpha,
                                        ReadOnlySpan<T> a, ReadOnlySpan<T> b, T beta, Span<T> c)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Validate(transposeA, transposeB, m, n, k, a, b, c);
        double alpha64 = double.CreateTruncating(alpha), beta64 = double.CreateTruncating(beta);
        for (var i = 0; i < m; i++)
        {
            for (var j = 0; j < n; j++)
            {
                var sum = 0.0;
                for (var p = 0; p < k; p++)
                {
                    var aip = transposeA ? a[p * m + i] : a[i * k + p];
                    var bpj = transposeB ? b[j * k + p] : b[p * n + j];
                    sum += double.CreateTruncating(aip) * double.CreateTruncating(bpj);
                }
                var r = alpha64 * sum;
                if (beta64 != 0) r += beta64 * double.CreateTruncating(c[i * n + j]);
                c[i * n + j] = T.CreateTruncating(r);
            }
        }
    }

    /// <summary>The same as the public overloads, with the engine's knobs exposed for tests and benchmarks.</summary>
    internal static unsafe void Multiply<TIn, TOut>(bool transposeA, bool transposeB, int m, int n, int k, float alpha,
                                                    ReadOnlySpan<TIn> a, ReadOnlySpan<TIn> b, float beta, Span<TOut> c,
                                                    int maxDegreeOfParallelism, bool portable)
        where TIn : unmanaged where TOut : unmanaged
    {
        Validate(transposeA, transposeB, m, n, k, a, b, c);
        fixed (TIn* pa = a, pb = b)
        fixed (TOut* pc = c)
            GemmEngine.Run(transposeA, transposeB, m, n, k, alpha, pa, pb, beta, pc, maxDegreeOfParallelism, portable);
    }

    private static void Validate<TIn, TOut>(bool transposeA, bool transposeB, int m, int n, int k, ReadOnlySpan<TIn> a, ReadOnlySpan<TIn> b, ReadOnlySpan<TOut> c)
        where TIn : unmanaged where TOut : unmanaged
    {
        Guard.NonNegative(m, nameof(m));
        Guard.NonNegative(n, nameof(n));
        Guard.NonNegative(k, nameof(k));
        if (transposeA) Guard.Shape(a, nameof(a), k, m);
        else Guard.Shape(a, nameof(a), m, k);
        if (transposeB) Guard.Shape(b, nameof(b), n, k);
        else Guard.Shape(b, nameof(b), k, n);
        Guard.Shape(c, nameof(c), m, n);
        Guard.Disjoint(c, nameof(c), a, nameof(a));
        Guard.Disjoint(c, nameof(c), b, nameof(b));
    }
}
