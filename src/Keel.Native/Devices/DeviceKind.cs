namespace Keel.Native.Devices;

/// <summary>The three implementations of <see cref="IDevice"/>.</summary>
public enum DeviceKind
{
    /// <summary>The C# reference ops on the host: exact, portable, the oracle for the other two.</summary>
    Cpu,
    /// <summary>An NVIDIA GPU: the kernels of <c>kernels/</c> compiled by NVRTC, cuBLAS for GEMMs.</summary>
    Cuda,
    /// <summary>The same kernels compiled for and run on the CPU by the emulator, for testing without a GPU.</summary>
    Emulated,
}
