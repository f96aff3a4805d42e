/// Fully connected layer, PyTorch layout (CLBlast GEMM plus the bias kernels of `Kernels/conv.cl`).
///
/// x [N, in], weight [out, in], bias [out], y [N, out]:
///
///     forward:      y[n,o]  = b[o] + Σ_i x[n,i] · w[o,i]          (y = x·Wᵀ + b)
///     grad input:   gx[n,i] = Σ_o go[n,o] · w[o,i]                (gx = go·W)
///     grad weight:  gw[o,i] = Σ_n go[n,o] · x[n,i]                (gW = goᵀ·x)
///     grad bias:    gb[o]   = Σ_n go[n,o]
///
/// Double cores for finite-difference tests; Float wrappers for `ReferenceBackend`.
extension Reference {
    public static func linearForward(x: [Double], weight: [Double], bias: [Double]?, n: Int, inFeatures: Int, outFeatures: Int) -> [Double] {
        precondition(x.count == n * inFeatures && weight.count == outFeatures * inFeatures && (bias?.count ?? outFeatures) == outFeatures)
        var y = [Double](repeating: 0, count: n * outFeatures)
        for b in 0..<n {
            for o in 0..<outFeatures {
                var s = bias?[o] ?? 0
                for i in 0..<inFeatures { s += x[b * inFeatures + i] * weight[o * inFeatures + i] }
                y[b * outFeatures + o] = s
            }
        }
        return y
    }

    /// Returns (grad x, grad weight, grad bias).
    public static func linearBackward(gradOut: [Double], x: [Double], weight: [Double], n: Int, inFeatures: Int, outFeatures: Int)
        -> (x: [Double], weight: [Double], bias: [Double]) {
        precondition(gradOut.count == n * outFeatures && x.count == n * inFeatures && weight.count == outFeatures * inFeatures)
        var gx = [Double](repeating: 0, count: n * inFeatures)
        var gw = [Double](repeating: 0, count: outFeatures * inFeatures)
        var gb = [Double](repeating: 0, count: outFeatures)
        for b in 0..<n {
            for o in 0..<outFeatures {
                let g = gradOut[b * outFeatures + o]
                gb[o] += g
                for i in 0..<inFeatures {
                    gx[b * inFeatures + i] += g * weight[o * inFeatures + i]
                    gw[o * inFeatures + i] += g * x[b * inFeatures + i]
                }
            }
        }
        return (gx, gw, gb)
    }

    public static func linearForward(x: [Float], weight: [Float], bias: [Float]?, n: Int, inFeatures: Int, outFeatures: Int) -> [Float] {
        linearForward(x: x.map(Double.init), weight: weight.map(Double.init), bias: bias?.map(Double.init),
                      n: n, inFeatures: inFeatures, outFeatures: outFeatures).map(Float.init)
    }

    public static func linearBackward(gradOut: [Float], x: [Float], weight: [Float], n: Int, inFeatures: Int, outFeatures: Int)
        -> (x: [Float], weight: [Float], bias: [Float]) {
        let r = linearBackward(gradOut: gradOut.map(Double.init), x: x.map(Double.init), weight: weight.map(Double.init),
                               n: n, inFeatures: inFeatures, outFeatures: outFeatures)
        return (r.x.map(Float.init), r.weight.map(Float.init), r.bias.map(Float.init))
    }
}
