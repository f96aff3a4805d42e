import SGETensor

/// BatchNorm2d over NCHW (kernels in `Kernels/batchnorm.cl`). Per channel c, over the M = N·H·W
/// values x_i of that channel:
///
///     training:  mean = Σ x_i / M,   var = Σ (x_i - mean)² / M           (biased: used to normalise)
///                running_mean = (1 - m)·running_mean + m·mean
///                running_var  = (1 - m)·running_var  + m·var·M/(M-1)     (unbiased, like PyTorch)
///     eval:      mean = running_mean, var = running_var
///     invstd = 1 / sqrt(var + eps),  x̂_i = (x_i - mean)·invstd,  y_i = γ·x̂_i + β
///
/// Backward with g_i = ∂L/∂y_i (training: mean and var depend on x):
///
///     ∂L/∂β = Σ g_i,   ∂L/∂γ = Σ g_i·x̂_i                                (accumulated, +=)
///     training:  ∂L/∂x_i = γ·invstd/M · (M·g_i - Σ g - x̂_i·Σ g·x̂)
///     eval:      ∂L/∂x_i = γ·invstd·g_i                                    (statistics are constants)
extension Reference {
    /// Index of element `i` (0..<N·H·W) of channel `c` in an NCHW array.
    @inline(__always) private static func channelIndex(_ i: Int, c: Int, channels: Int, hw: Int) -> Int {
        (i / hw * channels + c) * hw + i % hw
    }

    /// Per-channel batch mean and biased variance (two passes, Double).
    public static func batchNormStatistics(_ x: [Double], n: Int, c: Int, hw: Int) -> (mean: [Double], variance: [Double]) {
        let m = n * hw
        var mean = [Double](repeating: 0, count: c), variance = [Double](repeating: 0, count: c)
        for ch in 0..<c {
            var s = 0.0
            for i in 0..<m { s += x[channelIndex(i, c: ch, channels: c, hw: hw)] }
            let mu = s / Double(m)
            var v = 0.0
            for i in 0..<m {
                let d = x[channelIndex(i, c: ch, channels: c, hw: hw)] - mu
                v += d * d
            }
            mean[ch] = mu
            variance[ch] = v / Double(m)
        }
        return (mean, variance)
    }

    /// y = γ·(x - mean)·invstd + β per channel, with the given statistics.
    public static func batchNormNormalize(_ x: [Double], n: Int, c: Int, hw: Int, gamma: [Double], beta: [Double],
                                          mean: [Double], invstd: [Double]) -> [Double] {
        var y = [Double](repeating: 0, count: x.count)
        for ch in 0..<c {
            for i in 0..<(n * hw) {
                let j = channelIndex(i, c: ch, channels: c, hw: hw)
                y[j] = gamma[ch] * (x[j] - mean[ch]) * invstd[ch] + beta[ch]
            }
        }
        return y
    }

    /// Training-mode forward in Double (batch statistics), for finite-difference checks.
    public static func batchNormForwardTraining(_ x: [Double], n: Int, c: Int, hw: Int, gamma: [Double], beta: [Double],
                                                eps: Double) -> (out: [Double], mean: [Double], invstd: [Double]) {
        let (mean, variance) = batchNormStatistics(x, n: n, c: c, hw: hw)
        let invstd = variance.map { 1 / ($0 + eps).squareRoot() }
        return (batchNormNormalize(x, n: n, c: c, hw: hw, gamma: gamma, beta: beta, mean: mean, invstd: invstd), mean, invstd)
    }

    /// Backward in Double: (∂L/∂x, ∂L/∂γ, ∂L/∂β) from the saved per-channel mean and invstd.
    public static func batchNormBackward(_ gradOut: [Double], x: [Double], n: Int, c: Int, hw: Int, gamma: [Double],
                                         mean: [Double], invstd: [Double], training: Bool)
        -> (gradX: [Double], gradGamma: [Double], gradBeta: [Double]) {
        let m = n * hw
        var gx = [Double](repeating: 0, count: x.count)
        var gg = [Double](repeating: 0, count: c), gb = [Double](repeating: 0, count: c)
        for ch in 0..<c {
            var sg = 0.0, sgx = 0.0
            for i in 0..<m {
                let j = channelIndex(i, c: ch, channels: c, hw: hw)
                sg += gradOut[j]
                sgx += gradOut[j] * (x[j] - mean[ch]) * invstd[ch]
            }
            gg[ch] = sgx
            gb[ch] = sg
            for i in 0..<m {
                let j = channelIndex(i, c: ch, channels: c, hw: hw)
                if training {
                    let xhat = (x[j] - mean[ch]) * invstd[ch]
                    gx[j] = gamma[ch] * invstd[ch] / Double(m) * (Double(m) * gradOut[j] - sg - xhat * sgx)
                } else {
                    gx[j] = gamma[ch] * invstd[ch] * gradOut[j]
                }
            }
        }
        return (gx, gg, gb)
    }

    /// Float forward: normalises `x` ([N, C, H, W]) and, in training, updates the running statistics
    /// in place. Returns the output and the per-channel mean and invstd that backward needs.
    public static func batchNormForward(_ x: [Float], shape: Shape, gamma: [Float], beta: [Float],
                                        runningMean: inout [Float], runningVar: inout [Float],
                                        training: Bool, momentum: Float, eps: Float) -> (out: [Float], mean: [Float], invstd: [Float]) {
        let n = shape.n, c = shape.c, hw = shape.h * shape.w, m = n * hw
        let xd = x.map(Double.init)
        let mean: [Double], variance: [Double]
        if training {
            (mean, variance) = batchNormStatistics(xd, n: n, c: c, hw: hw)
            let mom = Double(momentum)
            for ch in 0..<c {
                let unbiased = m > 1 ? variance[ch] * Double(m) / Double(m - 1) : variance[ch]
                runningMean[ch] = Float((1 - mom) * Double(runningMean[ch]) + mom * mean[ch])
                runningVar[ch] = Float((1 - mom) * Double(runningVar[ch]) + mom * unbiased)
            }
        } else {
            mean = runningMean.map(Double.init)
            variance = runningVar.map(Double.init)
        }
        let invstd = variance.map { 1 / ($0 + Double(eps)).squareRoot() }
        let y = batchNormNormalize(xd, n: n, c: c, hw: hw, gamma: gamma.map(Double.init), beta: beta.map(Double.init),
                                   mean: mean, invstd: invstd)
        return (y.map { Float($0) }, mean.map { Float($0) }, invstd.map { Float($0) })
    }

    /// Float backward; the caller accumulates ∂L/∂γ and ∂L/∂β into its parameter gradients.
    public static func batchNormBackward(_ gradOut: [Float], x: [Float], shape: Shape, gamma: [Float], mean: [Float],
                                         invstd: [Float], training: Bool) -> (gradX: [Float], gradGamma: [Float], gradBeta: [Float]) {
        let r = batchNormBackward(gradOut.map(Double.init), x: x.map(Double.init), n: shape.n, c: shape.c, hw: shape.h * shape.w,
                                  gamma: gamma.map(Double.init), mean: mean.map(Double.init), invstd: invstd.map(Double.init),
                                  training: training)
        return (r.gradX.map { Float($0) }, r.gradGamma.map { Float($0) }, r.gradBeta.map { Float($0) })
    }
}
