/// The OpenCL C sources of sge's kernels, embedded in the binary at build time (`.embedInCode`),
/// so an installed `sge` needs no source tree.
public enum KernelSource {
    public static let elementwise = text(PackageResources.elementwise_cl)
    public static let bandwidth = text(PackageResources.bandwidth_cl)
    /// SGE by variant: sge_common.cl (layout, defines, the parameter gradient) before the wide GPU
    /// kernels (WG > 1), or before the CPU memory hints, vector_prelude.cl (exp8, unaligned vectors) and
    /// the narrow float8 kernels (WG == 1).
    public static let sgeGPU = text(PackageResources.sge_common_cl) + text(PackageResources.reduce_prelude_cl)
        + text(PackageResources.sge_gpu_cl)
    /// The register variant of the wide kernels (sge_gpu_reg.cl; defines KC, PPT, RROWS from the host).
    public static let sgeGPURegisters = text(PackageResources.sge_common_cl) + text(PackageResources.sge_gpu_reg_cl)
    public static let sgeCPU = text(PackageResources.sge_common_cl) + text(PackageResources.sge_cpu_hints_cl)
        + text(PackageResources.vector_prelude_cl) + text(PackageResources.sge_cpu_cl)
    public static let conv = text(PackageResources.conv_cl)
    /// The wide convolution's GEMMs for CPU drivers (conv_cpu.cl, after the vector helpers).
    public static let convCPU = text(PackageResources.vector_prelude_cl) + text(PackageResources.conv_cpu_cl)
    /// Winograd F(2×2, 3×3): the filter transform and the portable path (winograd.cl), and the fused
    /// CPU-driver kernel (winograd_cpu.cl, after the vector helpers).
    public static let winograd = text(PackageResources.winograd_cl)
    public static let winogradCPU = text(PackageResources.vector_prelude_cl) + text(PackageResources.winograd_cpu_cl)
    /// The implicit-GEMM convolution for CPU drivers (conv_implicit_cpu.cl, after the vector helpers).
    public static let convImplicitCPU = text(PackageResources.vector_prelude_cl) + text(PackageResources.conv_implicit_cpu_cl)
    /// The BatchNorm files each start with batchnorm_prelude.cl (the maths, BN_RELU).
    public static let batchnorm = text(PackageResources.batchnorm_prelude_cl) + text(PackageResources.batchnorm_cl)
    public static let batchnormCPU = text(PackageResources.batchnorm_prelude_cl) + text(PackageResources.batchnorm_cpu_cl)
    public static let batchnormGPU = text(PackageResources.batchnorm_prelude_cl) + text(PackageResources.reduce_prelude_cl)
        + text(PackageResources.batchnorm_gpu_cl)
    public static let pool = text(PackageResources.pool_cl)
    /// Max pooling for CPU drivers: pool_cpu.cl after pool.cl (its geometry defines and helpers) and the vector helpers.
    public static let poolCPU = pool + text(PackageResources.vector_prelude_cl) + text(PackageResources.pool_cpu_cl)
    /// loss.cl after the tree sum and the vector helpers (unaligned loads, hsum8).
    public static let loss = text(PackageResources.reduce_prelude_cl) + text(PackageResources.vector_prelude_cl)
        + text(PackageResources.loss_cl)
    public static let optim = text(PackageResources.optim_cl)

    /// Every source by file name, for listing and validation.
    public static var all: [(file: String, source: String)] {
        [("elementwise.cl", elementwise), ("bandwidth.cl", bandwidth), ("sge_gpu.cl", sgeGPU), ("sge_gpu_reg.cl", sgeGPURegisters), ("sge_cpu.cl", sgeCPU), ("conv.cl", conv), ("conv_cpu.cl", convCPU), ("conv_implicit_cpu.cl", convImplicitCPU), ("winograd.cl", winograd), ("winograd_cpu.cl", winogradCPU), ("batchnorm.cl", batchnorm), ("batchnorm_cpu.cl", batchnormCPU), ("batchnorm_gpu.cl", batchnormGPU),
         ("pool.cl", pool), ("pool_cpu.cl", poolCPU), ("loss.cl", loss), ("optim.cl", optim)]
    }

    private static func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }
}
