/// SGD with momentum, PyTorch's `torch.optim.SGD` rule (kernel in `Kernels/optim.cl`), per element:
///
///     d = g + wd·p
///     if momentum ≠ 0:
///         buf = firstStep ? d : momentum·buf + (1 - dampening)·d
///         d   = nesterov ? d + momentum·buf : buf
///     p = p - lr·d
///
/// With momentum = 0 the buffer is neither read nor written (as in PyTorch).
extension Reference {
    /// One step in Double; updates `param` and `momentumBuffer` in place.
    public static func sgdStep(_ param: inout [Double], grad: [Double], momentumBuffer: inout [Double], lr: Double,
                               momentum: Double, dampening: Double, weightDecay: Double, nesterov: Bool, firstStep: Bool) {
        for i in 0..<param.count {
            var d = grad[i] + weightDecay * param[i]
            if momentum != 0 {
                momentumBuffer[i] = firstStep ? d : momentum * momentumBuffer[i] + (1 - dampening) * d
                d = nesterov ? d + momentum * momentumBuffer[i] : momentumBuffer[i]
            }
            param[i] -= lr * d
        }
    }

    /// Float wrapper: the update in Double, stored back as Float.
    public static func sgdStep(_ param: inout [Float], grad: [Float], momentumBuffer: inout [Float], lr: Float, momentum: Float,
                               dampening: Float, weightDecay: Float, nesterov: Bool, firstStep: Bool) {
        var p = param.map(Double.init), b = momentumBuffer.map(Double.init)
        sgdStep(&p, grad: grad.map(Double.init), momentumBuffer: &b, lr: Double(lr), momentum: Double(momentum),
                dampening: Double(dampening), weightDecay: Double(weightDecay), nesterov: nesterov, firstStep: firstStep)
        param = p.map { Float($0) }
        momentumBuffer = b.map { Float($0) }
    }

    /// `sgdStep` on each tensor of a list with its own weight decay, then zeroes its gradient
    /// (the `sgd_step_multi` kernel: PyTorch's foreach SGD followed by `zero_grad`).
    public static func sgdStepMulti(_ params: inout [[Float]], grads: inout [[Float]], momentumBuffers: inout [[Float]],
                                    weightDecays: [Float], lr: Float, momentum: Float, dampening: Float, nesterov: Bool, firstStep: Bool) {
        for k in params.indices {
            sgdStep(&params[k], grad: grads[k], momentumBuffer: &momentumBuffers[k], lr: lr, momentum: momentum, dampening: dampening,
                    weightDecay: weightDecays[k], nesterov: nesterov, firstStep: firstStep)
            grads[k] = [Float](repeating: 0, count: grads[k].count)
        }
    }
}
