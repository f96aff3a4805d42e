import SGEKernels
import SGEOpenCL
import SGEReference
import SGETensor

/// Optimiser steps (maths in SGEReference/Optim.swift).
public protocol OptimOps {
    /// One in-place SGD step, PyTorch's rule: d = g + wd·p; if momentum ≠ 0 { buf = firstStep ? d :
    /// momentum·buf + (1 - dampening)·d; d = nesterov ? d + momentum·buf : buf }; p -= lr·d.
    func sgdStep(_ param: Tensor, grad: Tensor, momentumBuffer: Tensor, lr: Float, momentum: Float, dampening: Float,
                 weightDecay: Float, nesterov: Bool, firstStep: Bool) throws
}

func checkSGD(_ param: Tensor, grad: Tensor, momentumBuffer: Tensor, lr: Float, momentum: Float, dampening: Float,
              weightDecay: Float, nesterov: Bool) throws {
    try requireSameShape(param, grad, op: "sgdStep")
    try requireSameShape(param, momentumBuffer, op: "sgdStep")
    guard lr >= 0, lr.isFinite else { throw SGEError.invalidArgument("sgdStep(\(param.label)): learning rate must be ≥ 0 and finite, got \(lr)") }
    guard momentum >= 0, momentum.isFinite else { throw SGEError.invalidArgument("sgdStep(\(param.label)): momentum must be ≥ 0, got \(momentum)") }
    guard weightDecay >= 0, weightDecay.isFinite else {
        throw SGEError.invalidArgument("sgdStep(\(param.label)): weight decay must be ≥ 0, got \(weightDecay)")
    }
    guard dampening.isFinite else { throw SGEError.invalidArgument("sgdStep(\(param.label)): dampening must be finite, got \(dampening)") }
    if nesterov, momentum <= 0 || dampening != 0 {
        throw SGEError.invalidArgument("sgdStep(\(param.label)): nesterov needs momentum > 0 and dampening 0, got momentum \(momentum), dampening \(dampening)")
    }
}

extension ReferenceBackend: OptimOps {
    public func sgdStep(_ param: Tensor, grad: Tensor, momentumBuffer: Tensor, lr: Float, momentum: Float, dampening: Float,
                        weightDecay: Float, nesterov: Bool, firstStep: Bool) throws {
        try checkSGD(param, grad: grad, momentumBuffer: momentumBuffer, lr: lr, momentum: momentum, dampening: dampening,
                     weightDecay: weightDecay, nesterov: nesterov)
        var p = try param.values(), b = try momentumBuffer.values()
        Reference.sgdStep(&p, grad: try grad.values(), momentumBuffer: &b, lr: lr, momentum: momentum, dampening: dampening,
                          weightDecay: weightDecay, nesterov: nesterov, firstStep: firstStep)
        try param.write(p)
        if momentum != 0 { try momentumBuffer.write(b) }
    }
}

extension OpenCLBackend: OptimOps {
    public func sgdStep(_ param: Tensor, grad: Tensor, momentumBuffer: Tensor, lr: Float, momentum: Float, dampening: Float,
                        weightDecay: Float, nesterov: Bool, firstStep: Bool) throws {
        try checkSGD(param, grad: grad, momentumBuffer: momentumBuffer, lr: lr, momentum: momentum, dampening: dampening,
                     weightDecay: weightDecay, nesterov: nesterov)
        // With momentum 0 the buffer is untouched, so its device copy need not become the only valid one.
        let buf = momentum != 0 ? try momentumBuffer.deviceBufferForUpdate() : try momentumBuffer.deviceBuffer()
        try launch(kernel("sgd_step", KernelSource.optim),
                   [.buffer(param.deviceBufferForUpdate()), .buffer(grad.deviceBuffer()), .buffer(buf), .int(Int32(param.count)),
                    .float(lr), .float(momentum), .float(dampening), .float(weightDecay), .int(nesterov ? 1 : 0), .int(firstStep ? 1 : 0)],
                   count: param.count)
    }
}
