import SGEKernels
import SGEOpenCL
import SGEReference
import SGETensor

/// What `batchNormBackward` needs from the forward pass: the per-channel statistics used to normalise.
public struct BatchNormSaved {
    /// Per-channel mean, shape [C] (the batch mean in training, the running mean in eval).
    public let mean: Tensor
    /// Per-channel 1/sqrt(var + eps), shape [C].
    public let invstd: Tensor
    /// Whether the statistics came from the batch (backward then differentiates through them).
    public let training: Bool

    public init(mean: Tensor, invstd: Tensor, training: Bool) {
        self.mean = mean
        self.invstd = invstd
        self.training = training
    }
}

/// BatchNorm2d over NCHW (maths in SGEReference/BatchNorm.swift).
public protocol BatchNormOps {
    /// y = γ·(x - mean)·invstd + β per channel. Training: batch statistics over (N, H, W) (biased variance
    /// to normalise) and the running statistics updated in place with `momentum` and the UNBIASED
    /// variance, like PyTorch. Eval: the running statistics.
    /// With `relu` the output is max(y, 0): BatchNorm and the ReLU after it in one pass.
    func batchNormForward(_ x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVar: Tensor,
                          training: Bool, momentum: Float, eps: Float, relu: Bool) throws -> (out: Tensor, saved: BatchNormSaved)
    /// ∂L/∂x (a new tensor); ∂L/∂γ and ∂L/∂β ACCUMULATE into `gradGamma` and `gradBeta`. Differentiates
    /// through the batch statistics when `saved.training` (the usual case), else treats them as constants.
    /// `reluOutput`: the output of a forward with `relu`; `gradOut` is then the gradient of that
    /// output and is first masked where it was not positive (the ReLU's backward, fused).
    func batchNormBackward(_ gradOut: Tensor, x: Tensor, gamma: Tensor, saved: BatchNormSaved,
                           gradGamma: Tensor, gradBeta: Tensor, reluOutput: Tensor?) throws -> Tensor
}

extension BatchNormOps {
    /// BatchNorm alone (no fused ReLU).
    public func batchNormForward(_ x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVar: Tensor,
                                 training: Bool, momentum: Float, eps: Float) throws -> (out: Tensor, saved: BatchNormSaved) {
        try batchNormForward(x, gamma: gamma, beta: beta, runningMean: runningMean, runningVar: runningVar, training: training,
                             momentum: momentum, eps: eps, relu: false)
    }

    /// BatchNorm alone (no fused ReLU).
    public func batchNormBackward(_ gradOut: Tensor, x: Tensor, gamma: Tensor, saved: BatchNormSaved,
                                  gradGamma: Tensor, gradBeta: Tensor) throws -> Tensor {
        try batchNormBackward(gradOut, x: x, gamma: gamma, saved: saved, gradGamma: gradGamma, gradBeta: gradBeta, reluOutput: nil)
    }
}

/// Throws unless `t` has shape [channels].
func requireChannelVector(_ t: Tensor, channels: Int, op: String, input: Tensor) throws {
    guard t.shape == Shape([channels]) else {
        throw SGEError.shape("\(op): \(t.label) has shape \(t.shape) but \(input.label) of shape \(input.shape) needs [\(channels)]")
    }
}

func checkBatchNormForward(_ x: Tensor, _ params: [Tensor], training: Bool, momentum: Float, eps: Float) throws {
    let op = "batchNormForward"
    try x.shape.require(rank: 4, "\(op): \(x.label)")
    for p in params { try requireChannelVector(p, channels: x.shape.c, op: op, input: x) }
    guard eps > 0, eps.isFinite else { throw SGEError.invalidArgument("\(op): eps must be positive and finite, got \(eps)") }
    guard momentum >= 0, momentum <= 1 else { throw SGEError.invalidArgument("\(op): momentum must be in [0, 1], got \(momentum)") }
    if training, x.shape.n * x.shape.h * x.shape.w < 2 {
        throw SGEError.shape("\(op): training needs more than one value per channel, but \(x.label) has shape \(x.shape) (N·H·W = 1)")
    }
}

func checkBatchNormBackward(_ gradOut: Tensor, x: Tensor, gamma: Tensor, saved: BatchNormSaved, gradGamma: Tensor, gradBeta: Tensor,
                            reluOutput: Tensor?) throws {
    let op = "batchNormBackward"
    try x.shape.require(rank: 4, "\(op): \(x.label)")
    try requireSameShape(gradOut, x, op: op)
    if let reluOutput { try requireSameShape(reluOutput, x, op: op) }
    for p in [gamma, saved.mean, saved.invstd, gradGamma, gradBeta] {
        try requireChannelVector(p, channels: x.shape.c, op: op, input: x)
    }
}

extension ReferenceBackend: BatchNormOps {
    public func batchNormForward(_ x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVar: Tensor,
                                 training: Bool, momentum: Float, eps: Float, relu: Bool) throws -> (out: Tensor, saved: BatchNormSaved) {
        try checkBatchNormForward(x, [gamma, beta, runningMean, runningVar], training: training, momentum: momentum, eps: eps)
        var rm = try runningMean.values(), rv = try runningVar.values()
        let r = Reference.batchNormForward(try x.values(), shape: x.shape, gamma: try gamma.values(), beta: try beta.values(),
                                           runningMean: &rm, runningVar: &rv, training: training, momentum: momentum, eps: eps)
        if training {
            try runningMean.write(rm)
            try runningVar.write(rv)
        }
        let c = Shape([x.shape.c])
        let saved = BatchNormSaved(mean: try tensor(r.mean, c, label: "bn mean"), invstd: try tensor(r.invstd, c, label: "bn invstd"),
                                   training: training)
        return (try tensor(relu ? Reference.reluForward(r.out) : r.out, x.shape, label: "batchnorm"), saved)
    }

    public func batchNormBackward(_ gradOut: Tensor, x: Tensor, gamma: Tensor, saved: BatchNormSaved,
                                  gradGamma: Tensor, gradBeta: Tensor, reluOutput: Tensor?) throws -> Tensor {
        try checkBatchNormBackward(gradOut, x: x, gamma: gamma, saved: saved, gradGamma: gradGamma, gradBeta: gradBeta, reluOutput: reluOutput)
        let g = try reluOutput.map { Reference.reluBackward(out: try $0.values(), gradOut: try gradOut.values()) } ?? gradOut.values()
        let r = Reference.batchNormBackward(g, x: try x.values(), shape: x.shape, gamma: try gamma.values(),
                                            mean: try saved.mean.values(), invstd: try saved.invstd.values(), training: saved.training)
        try gradGamma.write(Reference.add(try gradGamma.values(), r.gradGamma))
        try gradBeta.write(Reference.add(try gradBeta.values(), r.gradBeta))
        return try tensor(r.gradX, x.shape, label: "batchnorm grad")
    }
}

extension OpenCLBackend {
    /// A power-of-two work-group size for a one-group reduction over `items` values (one float of local
    /// memory per work-item): the smallest power of two ≥ `items`, capped by `cap`, the kernel's and the
    /// device's work-group limits and the device's local memory.
    func reductionLocalSize(_ kernel: CLKernel, items: Int, cap: Int = 256) -> Int {
        let info = device.info
        let memoryLimit = Int(info.localMemory) / 4
        var limit = min(cap, info.maxWorkGroupSize, memoryLimit)
        let kernelLimit = kernel.maxWorkGroupSize
        if kernelLimit > 0 { limit = min(limit, kernelLimit) }
        var size = 1
        while size * 2 <= limit && size < items { size *= 2 }
        return size
    }

    /// Slices per channel for the CPU-driver batchnorm kernels (Kernels/batchnorm.cl): 1 (one work-item
    /// per channel, one launch) when the C channels alone give every compute unit ~4 work-items, else
    /// enough slices per channel for ~4 per compute unit, each of at least 256 values (then two
    /// launches: partial sums, combine and write).
    public func batchNormCPUSlices(n: Int, c: Int, hw: Int) -> Int {
        let target = 4 * max(1, device.info.computeUnits)
        guard c < target else { return 1 }
        return max(1, min((target + c - 1) / c, n * hw / 256))
    }
}

extension OpenCLBackend: BatchNormOps {
    public func batchNormForward(_ x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVar: Tensor,
                                 training: Bool, momentum: Float, eps: Float, relu: Bool) throws -> (out: Tensor, saved: BatchNormSaved) {
        try checkBatchNormForward(x, [gamma, beta, runningMean, runningVar], training: training, momentum: momentum, eps: eps)
        let defines = ["BN_RELU": relu ? "1" : "0"]
        let s = x.shape, c = Shape([s.c])
        let out = try output(s, label: "batchnorm")
        let mean = try output(c, label: "bn mean"), invstd = try output(c, label: "bn invstd")
        let outputs: [CLKernel.Arg] = [.buffer(try out.deviceBufferForOverwrite()), .buffer(try mean.deviceBufferForOverwrite()),
                                       .buffer(try invstd.deviceBufferForOverwrite())]
        let dims: [CLKernel.Arg] = [.int(Int32(s.n)), .int(Int32(s.c)), .int(Int32(s.h * s.w))]
        let inputs: [CLKernel.Arg] = [.buffer(try x.deviceBuffer()), .buffer(try gamma.deviceBuffer()), .buffer(try beta.deviceBuffer())]
        if training && effectiveBatchNormVariant == .cpu {
            // CPU drivers: one work-item per channel slice, float8 loops (Kernels/batchnorm.cl).
            let slices = batchNormCPUSlices(n: s.n, c: s.c, hw: s.h * s.w)
            let stats: [CLKernel.Arg] = [.buffer(try runningMean.deviceBufferForUpdate()), .buffer(try runningVar.deviceBufferForUpdate())]
            if slices == 1 {
                let k = try kernel("batchnorm_forward_cpu", KernelSource.batchnormCPU, defines)
                try launch(k, inputs + stats + outputs + dims + [.float(momentum), .float(eps)], global: [s.c], local: [1])
            } else {
                let part = try output(Shape([2 * s.c * slices]), label: "bn partials")
                let k1 = try kernel("batchnorm_forward_cpu_partial", KernelSource.batchnormCPU, defines)
                try launch(k1, [.buffer(try x.deviceBuffer()), .buffer(try part.deviceBufferForOverwrite())] + dims + [.int(Int32(slices))],
                           global: [s.c * slices], local: [1])
                let k2 = try kernel("batchnorm_forward_cpu_apply", KernelSource.batchnormCPU, defines)
                try launch(k2, inputs + stats + outputs + [.buffer(try part.deviceBuffer())] + dims + [.int(Int32(slices)), .float(momentum), .float(eps)],
                           global: [s.c * slices], local: [1])
            }
        } else if training {
            // GPUs: several work-groups per channel (Kernels/batchnorm_gpu.cl).
            try batchNormForwardGPU(x, gamma: gamma, beta: beta, runningMean: runningMean, runningVar: runningVar, momentum: momentum,
                                    eps: eps, relu: relu, out: out, mean: mean, invstd: invstd)
        } else {
            let k = try kernel("batchnorm_forward_eval", KernelSource.batchnorm, defines)
            lastEvent = try k.enqueue(inputs + [.buffer(try runningMean.deviceBuffer()), .buffer(try runningVar.deviceBuffer())]
                                      + outputs + dims + [.float(eps)], global: [s.h * s.w, s.n * s.c])
        }
        return (out, BatchNormSaved(mean: mean, invstd: invstd, training: training))
    }

    public func batchNormBackward(_ gradOut: Tensor, x: Tensor, gamma: Tensor, saved: BatchNormSaved,
                                  gradGamma: Tensor, gradBeta: Tensor, reluOutput: Tensor?) throws -> Tensor {
        try checkBatchNormBackward(gradOut, x: x, gamma: gamma, saved: saved, gradGamma: gradGamma, gradBeta: gradBeta, reluOutput: reluOutput)
        let s = x.shape
        let gx = try output(s, label: "batchnorm grad")
        let defines = ["BN_RELU": reluOutput != nil ? "1" : "0"]
        if effectiveBatchNormVariant == .cpu {
            // CPU drivers: one work-item per channel slice, float8 loops (Kernels/batchnorm.cl).
            let slices = batchNormCPUSlices(n: s.n, c: s.c, hw: s.h * s.w)
            let g = try gradOut.deviceBuffer()
            let reads: [CLKernel.Arg] = try [.buffer(g), .buffer(try reluOutput?.deviceBuffer() ?? g), .buffer(x.deviceBuffer())]
            let dims: [CLKernel.Arg] = [.int(Int32(s.n)), .int(Int32(s.c)), .int(Int32(s.h * s.w))]
            let writes: [CLKernel.Arg] = try [.buffer(gx.deviceBufferForOverwrite()), .buffer(gradGamma.deviceBufferForUpdate()),
                                          .buffer(gradBeta.deviceBufferForUpdate())]
            let params: [CLKernel.Arg] = try [.buffer(gamma.deviceBuffer()), .buffer(saved.mean.deviceBuffer()), .buffer(saved.invstd.deviceBuffer())]
            let training: CLKernel.Arg = .int(saved.training ? 1 : 0)
            if slices == 1 {
                let k = try kernel("batchnorm_backward_cpu", KernelSource.batchnormCPU, defines)
                try launch(k, reads + params + writes + dims + [training], global: [s.c], local: [1])
            } else {
                let part = try output(Shape([2 * s.c * slices]), label: "bn partials")
                let k1 = try kernel("batchnorm_backward_cpu_partial", KernelSource.batchnormCPU, defines)
                try launch(k1, reads + [.buffer(saved.mean.deviceBuffer()), .buffer(try part.deviceBufferForOverwrite())] + dims + [.int(Int32(slices))],
                           global: [s.c * slices], local: [1])
                let k2 = try kernel("batchnorm_backward_cpu_apply", KernelSource.batchnormCPU, defines)
                try launch(k2, reads + params + writes + [.buffer(try part.deviceBuffer())] + dims + [.int(Int32(slices)), training],
                           global: [s.c * slices], local: [1])
            }
            return gx
        }
        // GPUs: several work-groups per channel (Kernels/batchnorm_gpu.cl).
        try batchNormBackwardGPU(gradOut, x: x, gamma: gamma, saved: saved, gradGamma: gradGamma, gradBeta: gradBeta,
                                 reluOutput: reluOutput, gradX: gx)
        return gx
    }
}
