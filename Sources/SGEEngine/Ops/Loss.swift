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
    /// the float16 kernel. On PoCL at N = 256 the float16 kernel is already 4x faster at K = 16.
    static let lossRowsMaxK = 16

    /// One launch at any N and K (Kernels/loss.cl): the per-row terms go to a scratch [2N] tensor and
    /// the last work-group to finish sums them, counting groups on `lossDone`.
    public func softmaxCrossEntropy(_ logits: Tensor, labels: Tensor) throws -> (loss: Tensor, correct: Tensor, gradLogits: Tensor) {
        try checkSoftmaxCrossEntropy(logits, labels: labels)
        let (n, k) = (logits.shape[0], logits.shape[1])
        // Validate only when the host copy is current: reading a device-only tensor would sync.
        if labels.residency.contains(.host) {
            _ = try Reference.classIndices(try labels.read(), classes: k)
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
        } else {
            let kern = try kernel("softmax_cross_entropy", KernelSource.loss, ["LOSS_PREFETCH": device.info.isGPU ? "0" : "1"])
            let (local, rows) = lossGroupShape(kern, n: n, k: k)
            let groups = (n + rows - 1) / rows
            try launch(kern, args + [.int(Int32(rows)), .local(local * 4)], global: [groups * local], local: [local])
        }
        return (loss, correct, grad)
    }

    /// Work-items per row and rows per work-group for `softmax_cross_entropy`. GPUs: one row per
    /// group, an item per float16 chunk of it (up to 256). CPU drivers: one item per group walks its
    /// rows with float16 vectors, `lossGroupsPerUnit` groups per compute unit to balance the cores.
    func lossGroupShape(_ kern: CLKernel, n: Int, k: Int) -> (local: Int, rows: Int) {
        if let items = lossItemsPerRow { return (reductionLocalSize(kern, items: items), 1) }
        if device.info.isGPU { return (reductionLocalSize(kern, items: (k + 15) / 16), 1) }
        let groups = min(n, Self.lossGroupsPerUnit * max(1, device.info.computeUnits))
        return (1, (n + groups - 1) / groups)
    }

    static let lossGroupsPerUnit = 8
}
