import SGEReference
import SGETensor

/// BatchNorm in two halves — local statistics, then normalisation with given statistics — so
/// synchronised BatchNorm can all-reduce the per-channel sums between them (maths in
/// SGEReference/BatchNormSync.swift). One implementation serves every backend: the per-channel sums
/// and the element-wise passes run on the host in Double through the tensors' host copies (on an
/// OpenCL device that is one download and one upload per call). The fused `batchNormForward` /
/// `batchNormBackward` stay the path whenever BatchNorm is not synchronised.
extension BackendBase {
    /// Per-channel Σx and Σx² of `x` ([N, C, H, W]) over this rank's N·H·W values.
    public func batchNormLocalSums(_ x: Tensor) throws -> (sum: [Double], sumSquares: [Double]) {
        try x.shape.require(rank: 4, "batchNormLocalSums: \(x.label)")
        return Reference.batchNormLocalSums(try x.read(), shape: x.shape)
    }

    /// y = γ·(x - mean)·invstd + β (then ReLU if `relu`) with given per-channel statistics (Double, as
    /// the fused reference forward uses them); returns y and the statistics as [C] tensors for backward.
    public func batchNormNormalize(_ x: Tensor, gamma: Tensor, beta: Tensor, mean: [Double], invstd: [Double],
                                   relu: Bool) throws -> (out: Tensor, saved: BatchNormSaved) {
        try x.shape.require(rank: 4, "batchNormNormalize: \(x.label)")
        let s = x.shape
        for p in [gamma, beta] { try requireChannelVector(p, channels: s.c, op: "batchNormNormalize", input: x) }
        guard mean.count == s.c, invstd.count == s.c else {
            throw SGEError.shape("batchNormNormalize: \(mean.count) means and \(invstd.count) invstds for \(s.c) channels")
        }
        let y = Reference.batchNormNormalize(try x.read().map(Double.init), n: s.n, c: s.c, hw: s.h * s.w,
                                             gamma: try gamma.read().map(Double.init), beta: try beta.read().map(Double.init),
                                             mean: mean, invstd: invstd)
        let out = try tensor(y.map { relu ? max(Float($0), 0) : Float($0) }, s, label: "batchnorm")
        let c = Shape([s.c])
        return (out, BatchNormSaved(mean: try tensor(mean.map { Float($0) }, c, label: "bn mean"),
                                    invstd: try tensor(invstd.map { Float($0) }, c, label: "bn invstd"), training: true))
    }

    /// The gradient the backward reductions see: `gradOut`, masked where the fused ReLU's output was 0.
    public func batchNormMaskedGradient(_ gradOut: Tensor, reluOutput: Tensor?) throws -> [Float] {
        let g = try gradOut.read()
        guard let reluOutput else { return g }
        return Reference.reluBackward(out: try reluOutput.read(), gradOut: g)
    }

    /// Per-channel Σg and Σg·x̂ over this rank's values, g the (masked) output gradient.
    public func batchNormBackwardSums(_ gradOut: [Float], x: Tensor, saved: BatchNormSaved) throws -> (sumGrad: [Double], sumGradXhat: [Double]) {
        guard gradOut.count == x.count else { throw SGEError.shape("batchNormBackwardSums: \(gradOut.count) gradients for \(x.shape)") }
        return Reference.batchNormBackwardSums(gradOut, x: try x.read(), shape: x.shape, mean: try saved.mean.read(), invstd: try saved.invstd.read())
    }

    /// ∂L/∂x from the all-reduced sums over `count` values per channel (a new tensor).
    public func batchNormBackwardApply(_ gradOut: [Float], x: Tensor, gamma: Tensor, saved: BatchNormSaved,
                                       sumGrad: [Double], sumGradXhat: [Double], count: Int) throws -> Tensor {
        guard gradOut.count == x.count, sumGrad.count == x.shape.c, sumGradXhat.count == x.shape.c, count > 0 else {
            throw SGEError.shape("batchNormBackwardApply: sizes do not match \(x.shape) (count \(count))")
        }
        let gx = Reference.batchNormBackwardApply(gradOut, x: try x.read(), shape: x.shape, gamma: try gamma.read(), mean: try saved.mean.read(),
                                                  invstd: try saved.invstd.read(), sumGrad: sumGrad, sumGradXhat: sumGradXhat, count: count)
        return try tensor(gx, x.shape, label: "batchnorm grad")
    }
}
