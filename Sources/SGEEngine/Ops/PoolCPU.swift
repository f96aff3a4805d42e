import SGEKernels
import SGEOpenCL
import SGETensor

/// The max-pooling kernels: `.gpu` (Kernels/pool.cl, one work-item per output or input element) or
/// `.cpu` (Kernels/pool_cpu.cl, one work-item per plane walking it with float16 vectors, for CPU
/// drivers). Both give bit-identical results.
public enum PoolVariant: String, CaseIterable, Sendable {
    case gpu, cpu
}

/// Max pooling on CPU drivers (Kernels/pool_cpu.cl): work-groups of one work-item, one per plane.
extension OpenCLBackend {
    /// The variant in use: `poolVariant`, else by device kind. The CPU backward keeps `kernel` input
    /// rows in local memory; a device with less falls back to the gather kernel.
    func effectivePoolVariant(kernel k: Int, width: Int) -> PoolVariant {
        let variant = poolVariant ?? (device.info.isGPU ? .gpu : .cpu)
        return variant == .cpu && UInt64(k * width * 4) > device.info.localMemory ? .gpu : variant
    }

    /// planes, H, W, OH, OW as kernel arguments.
    func poolArgs(_ input: Shape, _ output: Shape) -> [CLKernel.Arg] {
        [input.n * input.c, input.h, input.w, output.h, output.w].map { .int(Int32($0)) }
    }

    /// A pool kernel compiled for one geometry (kernel size, stride and padding are `-D` defines).
    func poolKernel(_ name: String, _ source: String, _ k: Int, _ s: Int, _ p: Int) throws -> CLKernel {
        try kernel(name, source, ["POOL_K": "\(k)", "POOL_S": "\(s)", "POOL_P": "\(p)"])
    }

    func maxPoolForwardCPU(_ x: Tensor, out: Tensor, argmax: Tensor, kernel k: Int, stride: Int, padding: Int) throws {
        let planes = x.shape.n * x.shape.c
        try launch(poolKernel("max_pool_forward_cpu", KernelSource.poolCPU, k, stride, padding),
                   [.buffer(x.deviceBuffer()), .buffer(out.deviceBufferForOverwrite()), .buffer(argmax.deviceBufferForOverwrite())]
                       + poolArgs(x.shape, out.shape), global: [planes], local: [1])
    }

    func maxPoolBackwardCPU(_ gradOut: Tensor, argmax: Tensor, gradX: Tensor, kernel k: Int, stride: Int, padding: Int) throws {
        let s = gradX.shape
        try launch(poolKernel("max_pool_backward_cpu", KernelSource.poolCPU, k, stride, padding),
                   [.buffer(gradOut.deviceBuffer()), .buffer(argmax.deviceBuffer()), .buffer(gradX.deviceBufferForOverwrite()),
                    .local(k * s.w * 4)] + poolArgs(s, gradOut.shape), global: [s.n * s.c], local: [1])
    }
}
