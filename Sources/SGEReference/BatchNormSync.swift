import SGETensor

/// BatchNorm split into statistics and normalisation, for synchronised BatchNorm across ranks
/// (PyTorch's SyncBatchNorm). Per channel c, each rank r holds M_r values; with M = Σ_r M_r:
///
///     forward:   S1 = Σ_r Σ x_i,  S2 = Σ_r Σ x_i²          (local sums, then all-reduced)
///                mean = S1 / M,   var = max(S2 / M - mean², 0)   (biased; unbiased = var·M/(M-1))
///                y_i = γ·(x_i - mean)·invstd + β,  invstd = 1/sqrt(var + eps)
///     backward:  G1 = Σ_r Σ g_i,  G2 = Σ_r Σ g_i·x̂_i       (local sums, then all-reduced)
///                ∂L/∂x_i = γ·invstd/M · (M·g_i - G1 - x̂_i·G2)
///                ∂L/∂β += local Σ g_i,  ∂L/∂γ += local Σ g_i·x̂_i   (data parallelism averages these)
///
/// With one rank this is exactly `batchNormForward`/`batchNormBackward` in training mode (up to the
/// one-pass variance, which is exact in Double for normalised activations).
extension Reference {
    /// Per-channel Σx and Σx² over (N, H, W), in Double.
    public static func batchNormLocalSums(_ x: [Float], shape: Shape) -> (sum: [Double], sumSquares: [Double]) {
        let n = shape.n, c = shape.c, hw = shape.h * shape.w
        var s1 = [Double](repeating: 0, count: c), s2 = [Double](repeating: 0, count: c)
        for b in 0..<n {
            for ch in 0..<c {
                let base = (b * c + ch) * hw
                var a = 0.0, q = 0.0
                for i in 0..<hw {
                    let v = Double(x[base + i])
                    a += v
                    q += v * v
                }
                s1[ch] += a
                s2[ch] += q
            }
        }
        return (s1, s2)
    }

    /// Mean and biased variance from summed Σx, Σx² over `count` values per channel.
    public static func batchNormStatistics(sum: [Double], sumSquares: [Double], count: Int) -> (mean: [Double], variance: [Double]) {
        let m = Double(count)
        let mean = sum.map { $0 / m }
        let variance = zip(sumSquares, mean).map { max($0 / m - $1 * $1, 0) }
        return (mean, variance)
    }

    /// y = γ·(x - mean)·invstd + β with the given per-channel statistics, then max(y, 0) if `relu`.
    public static func batchNormNormalize(_ x: [Float], shape: Shape, gamma: [Float], beta: [Float], mean: [Float], invstd: [Float],
                                          relu: Bool) -> [Float] {
        let y = batchNormNormalize(x.map(Double.init), n: shape.n, c: shape.c, hw: shape.h * shape.w, gamma: gamma.map(Double.init),
                                   beta: beta.map(Double.init), mean: mean.map(Double.init), invstd: invstd.map(Double.init))
        return y.map { relu ? max(Float($0), 0) : Float($0) }
    }

    /// Per-channel Σg and Σg·x̂ (x̂ = (x - mean)·invstd) over (N, H, W), in Double.
    public static func batchNormBackwardSums(_ gradOut: [Float], x: [Float], shape: Shape, mean: [Float],
                                             invstd: [Float]) -> (sumGrad: [Double], sumGradXhat: [Double]) {
        let n = shape.n, c = shape.c, hw = shape.h * shape.w
        var g1 = [Double](repeating: 0, count: c), g2 = [Double](repeating: 0, count: c)
        for b in 0..<n {
            for ch in 0..<c {
                let base = (b * c + ch) * hw
                let mu = Double(mean[ch]), inv = Double(invstd[ch])
                var a = 0.0, q = 0.0
                for i in 0..<hw {
                    let g = Double(gradOut[base + i])
                    a += g
                    q += g * (Double(x[base + i]) - mu) * inv
                }
                g1[ch] += a
                g2[ch] += q
            }
        }
        return (g1, g2)
    }

    /// ∂L/∂x_i = γ·invstd/M · (M·g_i - G1 - x̂_i·G2) with the all-reduced sums G1, G2 over M values per channel.
    public static func batchNormBackwardApply(_ gradOut: [Float], x: [Float], shape: Shape, gamma: [Float], mean: [Float], invstd: [Float],
                                              sumGrad: [Double], sumGradXhat: [Double], count: Int) -> [Float] {
        let n = shape.n, c = shape.c, hw = shape.h * shape.w
        let m = Double(count)
        var gx = [Float](repeating: 0, count: x.count)
        for b in 0..<n {
            for ch in 0..<c {
                let base = (b * c + ch) * hw
                let mu = Double(mean[ch]), inv = Double(invstd[ch]), scale = Double(gamma[ch]) * inv / m
                for i in 0..<hw {
                    let xhat = (Double(x[base + i]) - mu) * inv
                    gx[base + i] = Float(scale * (m * Double(gradOut[base + i]) - sumGrad[ch] - xhat * sumGradXhat[ch]))
                }
            }
        }
        return gx
    }
}
