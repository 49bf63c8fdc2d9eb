using System.Runtime.CompilerServices;
using Keel.Cuda.CublasLt;

namespace Keel.Native.Tests.Cuda;

/// <summary>The cuBLASLt structs Keel passes by pointer must match cublasLt.h byte for byte.</summary>
public sealed unsafe class CublasLtLayoutTests
{
    [Fact]
    public void AlgorithmIsEightWords() => Assert.Equal(64, Unsafe.SizeOf<MatmulAlgo>());

    [Fact]
    public void HeuristicResultHasTheHeaderLayout()
    {
        var result = default(MatmulHeuristicResult);
        var start = (byte*)&result;

        Assert.Equal(96, Unsafe.SizeOf<MatmulHeuristicResult>());
        Assert.Equal(0, (byte*)&result.Algorithm - start);
        Assert.Equal(64, (byte*)&result.WorkspaceSize - start);
        Assert.Equal(72, (byte*)&result.State - start);
        Assert.Equal(76, (byte*)&result.WavesCount - start);
        Assert.Equal(80, (byte*)result.Reserved - start);
    }
}
