namespace Keel.Cuda.Interop;

/// <summary>The CUDA libraries Keel.Cuda binds, each resolved once per process by <see cref="CudaLibraries"/>.</summary>
public enum CudaLibrary
{
    /// <summary>The CUDA driver API (<c>libcuda.so.1</c>), installed with the GPU driver.</summary>
    Driver,
    /// <summary>The NVRTC run-time compiler (<c>libnvrtc.so.13/.12/.11.2</c>).</summary>
    Nvrtc,
    /// <summary>cuBLAS (<c>libcublas.so.13/.12/.11</c>).</summary>
    Cublas,
    /// <summary>cuBLASLt (<c>libcublasLt.so.13/.12/.11</c>).</summary>
    CublasLt,
    /// <summary>NCCL, the collective communications library (<c>libnccl.so.2</c>), for training on several GPUs.</summary>
    Nccl,
}
