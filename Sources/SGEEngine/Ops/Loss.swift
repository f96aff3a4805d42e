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
    public func softmaxCrossEntropy(_ logits: Tensor, labels: Tensor) throws -> (loss: Tensor, correct: Tensor, gradLogits: Tensor) {
        try checkSoftmaxCrossEntropy(logits, labels: labels)
        let (n, k) = (logits.shape[0], logits.shape[1])
        // Validate only when the host copy is current: reading a device-only tensor would sync.
        if labels.residency.contains(.host) {
            _ = try Reference.classIndices(try labels.read(), classes: k)
        }
        let loss = try output([1], label: "loss"), correct = try output([1], label: "correct")
        let grad = try output(logits.shape, label: "logits grad")
        let kern = try kernel("softmax_cross_entropy", KernelSource.loss)
        let local = reductionLocalSize(kern, items: n)
        try launch(kern, [.buffer(logits.deviceBuffer()), .buffer(labels.deviceBuffer()), .buffer(loss.deviceBufferForOverwrite()),
                          .buffer(correct.deviceBufferForOverwrite()), .buffer(grad.deviceBufferForOverwrite()),
                          .int(Int32(n)), .int(Int32(k)), .local(local * 4)],
                   global: [local], local: [local])
        return (loss, correct, grad)
    }
}
