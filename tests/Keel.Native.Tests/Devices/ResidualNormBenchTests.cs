using Keel.Cli.Commands.Bench;

namespace Keel.Native.Tests.Devices;

/// <summary><c>keel bench norm</c> where it can be checked without a GPU: its cases, its byte counts and its no-GPU exit.</summary>
public class ResidualNormBenchTests
{
    [Fact]
    public void WithoutAGpuBenchNormSaysSoAndSucceeds()
    {
        // On a GPU the benchmark itself runs (perf/gpu-checks.sh), not inside the test suite.
        if (GpuPresent()) Assert.Skip("a GPU is present: keel bench norm would measure instead");
        var output = new StringWriter();
        var error = new StringWriter();
        var code = KeelCli.Run(["bench", "norm", "--shape", "1024x1024"], output, error);
        Assert.True(code == 0, error.ToString());
        Assert.Contains("keel bench norm: no GPU here", output.ToString());
    }

    [Fact]
    public void ShapesAreRowsByHidden()
    {
        Assert.Equal((16384, 1024), NormSuite.Parse("16384x1024"));
        foreach (var bad in new[] { "16384", "16384x", "x1024", "16384X1024", "-1x8", "0x1024", "2x3x4", " 8x8" })
            Assert.Throws<ArgumentException>("shape", () => NormSuite.Parse(bad));
    }

    [Fact]
    public void ByteCountsAreThoseOfTheKernelHeader()
    {
        // 12 bytes per element forward (x 4 + f 2 in, y 4 + z 2 out), 22 backward; gains and statistics beside.
        const long rows = 16384, hidden = 1024;
        Assert.Equal(12.0 * rows * hidden + 8 * hidden + 8 * rows, NormSuite.ForwardBytes(rows, hidden));
        Assert.Equal(22.0 * rows * hidden + 24 * hidden + 8 * rows, NormSuite.BackwardBytes(rows, hidden));
    }

    private static bool GpuPresent()
    {
        if (!CudaLibraries.TryLoad(CudaLibrary.Driver, out _, out _)) return false;
        try
        {
            CudaDriver.Initialize();
            return CudaDriver.DeviceCount > 0;
        }
        catch (CudaException)
        {
            return false;
        }
    }
}
