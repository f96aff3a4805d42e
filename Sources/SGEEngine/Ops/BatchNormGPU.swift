import SGEKernels
import SGEOpenCL
import SGETensor

/// The BatchNorm training kernels: `.gpu` (Kernels/batchnorm_gpu.cl, several work-groups per
/// channel) or `.cpu` (Kernels/batchnorm.cl's per-slice float8 loops for CPU drivers).
public enum BatchNormVariant: String, CaseIterable, Sendable {
    case gpu, cpu
}

extension OpenCLBackend {
    /// The variant in use: `batchNormVariant`, else by device kind.
    var effectiveBatchNormVariant: BatchNormVariant { batchNormVariant ?? (device.info.isGPU ? .gpu : .cpu) }
}

/// BatchNorm's training forward and its backward on GPUs (Kernels/batchnorm_gpu.cl): each channel is
/// split into `parts` contiguous pieces, one work-group each, so a layer with few channels still
/// fills the GPU; two launches per direction (partial statistics, then merge and write).
extension OpenCLBackend {
    /// Work-groups per channel: enough for ~4 work-groups per compute unit over all channels, at
    /// least 2·`local` values each, at most 1024.
    func batchNormGPUParts(n: Int, c: Int, hw: Int, local: Int) -> Int {
        let target = (4 * max(device.info.computeUnits, 1) + c - 1) / c
        return max(1, min(target, (n * hw) / max(2 * local, 1), 1024))
    }

    /// The work-group size of the GPU kernels: 256, or less where the device or kernel needs it.
    private func batchNormGPULocal(_ k: CLKernel, n: Int, hw: Int) -> Int { reductionLocalSize(k, items: n * hw, cap: 256) }

    func batchNormForwardGPU(_ x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVar: Tensor, momentum: Float,
                             eps: Float, relu: Bool, out: Tensor, mean: Tensor, invstd: Tensor) throws {
        let s = x.shape, hw = s.h * s.w
        let defines = ["BN_RELU": relu ? "1" : "0"]
        let stats = try kernel("batchnorm_gpu_stats", KernelSource.batchnormGPU, defines)
        let local = batchNormGPULocal(stats, n: s.n, hw: hw)
        let parts = batchNormGPUParts(n: s.n, c: s.c, hw: hw, local: local)
        let part = try output([s.c * parts * 2], label: "bn partial statistics")
        let xb = try x.deviceBuffer(), pb = try part.deviceBufferForOverwrite()
        let dims: [CLKernel.Arg] = [.int(Int32(s.n)), .int(Int32(s.c)), .int(Int32(hw)), .int(Int32(parts))]
        try launch(stats, [.buffer(xb), .buffer(pb)] + dims + [.local(local * 4)], global: [s.c * parts * local], local: [local])
        try launch(kernel("batchnorm_gpu_normalize", KernelSource.batchnormGPU, defines),
                   [.buffer(xb), .buffer(pb), .buffer(try gamma.deviceBuffer()), .buffer(try beta.deviceBuffer()),
                    .buffer(try runningMean.deviceBufferForUpdate()), .buffer(try runningVar.deviceBufferForUpdate()),
                    .buffer(try out.deviceBufferForOverwrite()), .buffer(try mean.deviceBufferForOverwrite()),
                    .buffer(try invstd.deviceBufferForOverwrite())] + dims + [.float(momentum), .float(eps)],
                   global: [s.c * parts * local], local: [local])
    }

    func batchNormBackwardGPU(_ gradOut: Tensor, x: Tensor, gamma: Tensor, saved: BatchNormSaved, gradGamma: Tensor, gradBeta: Tensor,
                              reluOutput: Tensor?, gradX: Tensor) throws {
        let s = x.shape, hw = s.h * s.w
        let defines = ["BN_RELU": reluOutput != nil ? "1" : "0"]
        let sums = try kernel("batchnorm_gpu_backward_sums", KernelSource.batchnormGPU, defines)
        let local = batchNormGPULocal(sums, n: s.n, hw: hw)
        let parts = batchNormGPUParts(n: s.n, c: s.c, hw: hw, local: local)
        let part = try output([s.c * parts * 2], label: "bn partial gradient sums")
        let (g, xb, pb) = (try gradOut.deviceBuffer(), try x.deviceBuffer(), try part.deviceBufferForOverwrite())
        let y = try reluOutput?.deviceBuffer() ?? g
        let dims: [CLKernel.Arg] = [.int(Int32(s.n)), .int(Int32(s.c)), .int(Int32(hw)), .int(Int32(parts))]
        try launch(sums, [.buffer(g), .buffer(y), .buffer(xb), .buffer(try saved.mean.deviceBuffer()), .buffer(pb)] + dims + [.local(local * 4)],
                   global: [s.c * parts * local], local: [local])
        try launch(kernel("batchnorm_gpu_backward_apply", KernelSource.batchnormGPU, defines),
                   [.buffer(g), .buffer(y), .buffer(xb), .buffer(try gamma.deviceBuffer()), .buffer(try saved.mean.deviceBuffer()),
                    .buffer(try saved.invstd.deviceBuffer()), .buffer(pb), .buffer(try gradX.deviceBufferForOverwrite()),
                    .buffer(try gradGamma.deviceBufferForUpdate()), .buffer(try gradBeta.deviceBufferForUpdate())]
                    + dims + [.int(saved.training ? 1 : 0)],
                   global: [s.c * parts * local], local: [local])
    }
}
