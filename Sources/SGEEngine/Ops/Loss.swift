import SGEKernels
import SGEOpenCL
import SGEReference
import SGETensor

/// Softmax cross-entropy (maths in SGEReference/Loss.swift).
public protocol LossOps {
    /// Mean over the batch of -log softmax(logits)[label], fused with ∂loss/∂logits = (softmax - onehot)/N
    /// and the number of rows whose first argmax equals the label. `logits` [N, K]; `labels` [N] holds
    /// class indices as floats. `loss` and `correct` are 1-element tensors, so training need not sync
    /// every step. Labels on the host are validated (SGEError.invalidArgument); an invalid label that
    /// only lives on the device makes the OpenCL loss NaN.
    func softmaxCrossEntropy(_ logits: Tensor, labels: Tensor) throws -> (loss: Tensor, correct: Tensor, gradLogits: Tensor)
}

func checkSoftmaxCrossEntropy(_ logits: Tensor, labels: Tensor) throws {
    try logits.shape.require(rank: 2, "softmaxCrossEntropy: \(logits.label)")
    guard labels.shape == Shape([logits.shape[0]]) else {
        throw SGEError.shape("softmaxCrossEntropy: \(labels.label) has shape \(labels.shape) but \(logits.label) of shape \(logits.shape) needs [\(logits.shape[0])] labels")
    }
}

extension ReferenceBackend: LossOps {
    public func softmaxCrossEntropy(_ logits: Tensor, labels: Tensor) throws -> (loss: Tensor, correct: Tensor, gradLogits: Tensor) {
        try checkSoftmaxCrossEntropy(logits, labels: labels)
        let r = try Reference.softmaxCrossEntropy(try logits.values(), labels: try labels.values(), n: logits.shape[0], k: logits.shape[1])
        return (try tensor([r.loss], [1], label: "loss"), try tensor([r.correct], [1], label: "correct"),
                try tensor(r.gradLogits, logits.shape, label: "logits grad"))
    }
}

extension OpenCLBackend: LossOps {
    /// Below this many classes a work-item takes a whole row (`softmax_cross_entropy_rows`, the
    /// arithmetic of the single-group kernel it replaced: bit-identical training at K = 10); from here
    /// the float16 kernels (`softmax_cross_entropy_cpu` on CPU drivers, which needs K >= 16, and
    /// `softmax_cross_entropy`). On PoCL at N = 256 the float16 kernel is already 4x faster at K = 16.
    static let lossRowsMaxK = 16

    /// One launch at any N and K (Kernels/loss.cl): the per-row terms go to a scratch [2N] tensor and
    /// the last work-group to finish sums them, counting groups on `lossDone`.
    public func softmaxCrossEntropy(_ logits: Tensor, labels: Tensor) throws -> (loss: Tensor, correct: Tensor, gradLogits: Tensor) {
        try checkSoftmaxCrossEntropy(logits, labels: labels)
        let (n, k) = (logits.shape[0], logits.shape[1])
        // Validate only when the host copy is current: reading a device-only tensor would sync.
        if labels.residency.contains(.host) {
            try labels.withHostValues { try Reference.checkClassIndices($0, classes: k) }
        }
        let loss = try output([1], label: "loss"), correct = try output([1], label: "correct")
        let grad = try output(logits.shape, label: "logits grad")
        let rowOut = try output([2 * n], label: "loss rows")
        let args: [CLKernel.Arg] = try [.buffer(logits.deviceBuffer()), .buffer(labels.deviceBuffer()), .buffer(loss.deviceBufferForOverwrite()),
                                    .buffer(correct.deviceBufferForOverwrite()), .buffer(grad.deviceBufferForOverwrite()),
                                    .buffer(rowOut.deviceBufferForOverwrite()), .buffer(lossDone.deviceBufferForUpdate()),
                                    .int(Int32(n)), .int(Int32(k))]
        if k < Self.lossRowsMaxK {
            let kern = try kernel("softmax_cross_entropy_rows", KernelSource.loss)
            let local = reductionLocalSize(kern, items: n)
            try launch(kern, args + [.local(local * 4)], global: [(n + local - 1) / local * local], local: [local])
        } else if lossItemsPerRow == nil && !device.info.isGPU {
            // CPU drivers: one work-item per group walks its rows, `lossGroupsPerUnit` groups per
            // compute unit to balance the cores.
            let kern = try kernel("softmax_cross_entropy_cpu", KernelSource.loss)
            let groups = min(n, Self.lossGroupsPerUnit * max(1, device.info.computeUnits))
            let rows = (n + groups - 1) / groups
            try launch(kern, args + [.int(Int32(rows)), .local(4)], global: [(n + rows - 1) / rows], local: [1])
        } else {
            // GPUs (and the GPU mapping forced on any device): one row per group, an item per float16
            // chunk of it (up to 256), or `lossItemsPerRow` items.
            let kern = try kernel("softmax_cross_entropy", KernelSource.loss)
            let local = reductionLocalSize(kern, items: lossItemsPerRow ?? (k + 15) / 16)
            try launch(kern, args + [.int(1), .local(local * 4)], global: [n * local], local: [local])
        }
        return (loss, correct, grad)
    }

    /// Groups per compute unit for `softmax_cross_entropy_cpu` (on 2-core PoCL at N = 256, K = 1000,
    /// 16 to 64 groups measured alike, 4 groups 3% and 2 groups 10% slower).
    static let lossGroupsPerUnit = 8
}
