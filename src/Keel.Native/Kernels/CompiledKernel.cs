namespace Keel.Native.Kernels;

/// <summary>A compiled kernel image and how it was obtained.</summary>
/// <param name="Spec">The specialization compiled.</param>
/// <param name="Target">An architecture such as <c>sm_90</c>, or <c>emulation</c>.</param>
/// <param name="Image">The CUBIN (or, for emulation, the path of the shared object as UTF-8).</param>
/// <param name="Log">The compiler's log (warnings); empty when the image came from the cache.</param>
/// <param name="CompileTime">Wall time spent compiling; zero for a cache hit.</param>
/// <param name="FromCache">True when the image was read from the on-disk cache.</param>
public sealed record CompiledKernel(KernelSpec Spec, string Target, byte[] Image, string Log, TimeSpan CompileTime, bool FromCache);
