namespace Keel.Native.Tests.Devices;

/// <summary>
/// <see cref="IDevice.Gemm"/> on the kernel devices against an fp64 triple loop over the very values uploaded. On the GPU
/// this is cuBLAS behind CudaDevice's row-major mapping (operands swapped, transposes and leading dimensions per
/// operand, leading dimensions folded into rows), which nothing else checks directly; the emulator runs the reference.
/// </summary>
public class GemmDeviceTests
{
    public static TheoryData<DeviceKind, bool, bool, DType> Cases()
    {
        var data = new TheoryData<DeviceKind, bool, bool, DType>();
        foreach (var kind in new[] { DeviceKind.Emulated, DeviceKind.Cuda })
        foreach (var transposeA in new[] { false, true })
        foreach (var transposeB in new[] { false, true })
        foreach (var output in new[] { DType.Float32, DType.BFloat16 })
            data.Add(kind, transposeA, transposeB, output);
        return data;
    }

    /// <summary>bf16 operands, fp32 or bf16 output; c = alpha op(a) op(b) with beta = 0 (c poisoned: it must not be read), then beta = 0.75 (c read).</summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void Bf16GemmMatchesTheProductInEveryLayout(DeviceKind kind, bool transposeA, bool transposeB, DType output)
    {
        var device = TestDevices.Get(kind);
        const int m = 37, n = 20, k = 24;
        var rng = new Random((transposeA ? 1 : 0) + (transposeB ? 2 : 0) + (output == DType.BFloat16 ? 4 : 0));
        var a = Rounded(DeviceData.Random(rng, m * k), DType.BFloat16);
        var b = Rounded(DeviceData.Random(rng, k * n), DType.BFloat16);
        var c0 = Rounded(DeviceData.Random(rng, m * n), output);
        var aShape = transposeA ? new TensorShape(k, m) : new TensorShape(m, k);
        var bShape = transposeB ? new TensorShape(n, k) : new TensorShape(k, n);
        using var da = DeviceData.Upload(device, a, DType.BFloat16, aShape);
        using var db = DeviceData.Upload(device, b, DType.BFloat16, bShape);
        var tolerance = output == DType.BFloat16 ? 1e-2 : 1e-5;
        var what = $"{(transposeA ? "T" : "N")}{(transposeB ? "T" : "N")} -> {output}";

        using (var dc = DeviceData.Poisoned(device, output, new TensorShape(m, n)))
        {
            device.Gemm(da, transposeA, db, transposeB, dc, alpha: 1.5f);
            DeviceData.AssertClose(Product(a, transposeA, b, transposeB, m, n, k, 1.5, null, 0), DeviceData.Download(device, dc), tolerance, what + ", beta 0");
        }
        using (var dc = DeviceData.Upload(device, c0, output, new TensorShape(m, n)))
        {
            device.Gemm(da, transposeA, db, transposeB, dc, alpha: -0.5f, beta: 0.75f);
            DeviceData.AssertClose(Product(a, transposeA, b, transposeB, m, n, k, -0.5, c0, 0.75), DeviceData.Download(device, dc), tolerance, what + ", beta 0.75");
        }
    }

    /// <summary>
    /// Activations [batch, sequence, in] times a weight [out, in] transposed (a linear layer), and the weight gradient
    /// dW += dYᵀ·X with both operands folded from rank 3 and fp32 accumulation (beta = 1); fp32 operands too.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDevices.KernelDevices), MemberType = typeof(TestDevices))]
    public void FoldedLeadingDimensionsAndFp32Operands(DeviceKind kind)
    {
        var device = TestDevices.Get(kind);
        const int batch = 3, sequence = 7, inputs = 40, outputs = 24, rows = batch * sequence;
        var rng = new Random(9);
        foreach (var operands in new[] { DType.BFloat16, DType.Float32 })
        {
            var x = Rounded(DeviceData.Random(rng, rows * inputs), operands);
            var w = Rounded(DeviceData.Random(rng, outputs * inputs), operands);
            var dy = Rounded(DeviceData.Random(rng, rows * outputs), operands);
            var dw0 = DeviceData.Random(rng, outputs * inputs);
            using var dx = DeviceData.Upload(device, x, operands, new TensorShape(batch, sequence, inputs));
            using var dwt = DeviceData.Upload(device, w, operands, new TensorShape(outputs, inputs));
            using var ddy = DeviceData.Upload(device, dy, operands, new TensorShape(batch, sequence, outputs));
            using var y = DeviceData.Poisoned(device, DType.Float32, new TensorShape(batch, sequence, outputs));
            using var dw = DeviceData.Upload(device, dw0, DType.Float32, new TensorShape(outputs, inputs));

            device.Gemm(dx, false, dwt, true, y);
            device.Gemm(ddy, true, dx, false, dw, beta: 1f);

            DeviceData.AssertClose(Product(x, false, w, true, rows, outputs, inputs, 1, null, 0), DeviceData.Download(device, y), 1e-5, $"y = x·Wᵀ, {operands}");
            DeviceData.AssertClose(Product(dy, true, x, false, outputs, inputs, rows, 1, dw0, 1), DeviceData.Download(device, dw), 1e-5, $"dW += dYᵀ·x, {operands}");
        }
    }

    private static float[] Rounded(float[] values, DType dtype) => dtype == DType.BFloat16 ? Array.ConvertAll(values, BFloat16.Round) : values;

    private static float[] Product(float[] a, bool transposeA, float[] b, bool transposeB, int m, int n, int k, double alpha, float[]? c, double beta)
    {
        var result = new float[m * n];
        for (var i = 0; i < m; i++)
        for (var j = 0; j < n; j++)
        {
            double sum = 0;
            for (var p = 0; p < k; p++)
                sum += (double)(transposeA ? a[p * m + i] : a[i * k + p]) * (transposeB ? b[j * k + p] : b[p * n + j]);
            result[i * n + j] = (float)(alpha * sum + (c is null ? 0 : beta * c[i * n + j]));
        }
        return result;
    }
}
