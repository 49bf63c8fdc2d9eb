using Keel.Native.Kernels.Launchers;

namespace Keel.Native.Kernels;

/// <summary>
/// Every kernel specialization the library launches. <c>keel compile</c> and the compile tests walk this
/// list, so a specialization that does not compile for a supported architecture is caught before a GPU sees it.
/// </summary>
public static class KernelCatalog
{
    /// <summary>All specializations, by file then defines.</summary>
    public static IReadOnlyList<KernelSpec> All { get; } =
        new[]
        {
            CastKernels.Spec, OptimizerKernels.Spec, RopeKernels.Spec,
            ActivationKernels.BFloat16Spec, ActivationKernels.Float32Spec, EmbeddingKernels.Spec, CrossEntropyKernels.Spec,
        }
            .Concat(ResidualNormKernels.Specs)
            .Concat(AttentionKernels.Specs)
            .OrderBy(s => s.Key, StringComparer.Ordinal).ToList();
}
