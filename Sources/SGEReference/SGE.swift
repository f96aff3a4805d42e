import Foundation
import SGETensor

/// Spatial Group-wise Enhance (kernels in `Kernels/sge_*.cl`), after PytorchInsight's
/// `SpatialGroupEnhance`.
///
/// x is (N, C, H, W) with G groups, K = C/G channels per group and M = H*W positions. Each
/// (n, g) slab x[k, i] (k < K, i < M) is processed on its own:
///
///     m_k = (1/M) Σ_i x[k,i]                       channel means (global average pooling)
///     c_i = Σ_k m_k x[k,i]                         similarity of each position to the group's mean
///     μ   = (1/M) Σ_i c_i
///     σ   = sqrt( Σ_i (c_i - μ)² / (M-1) )         unbiased std (needs M ≥ 2)
///     t_i = (c_i - μ) / (σ + ε)   (normalize)      ε = 1e-5;  t_i = c_i when normalize == false
///     a_i = w[g] t_i + b[g]
///     s_i = sigmoid(a_i)                           the gate map (N, G, H, W)
///     out[k,i] = x[k,i] s_i
///
/// μ is computed shifted by c_0 (μ = c_0 + mean(c - c_0)) so a spatially constant slab gives
/// c_i - μ = 0 and σ = 0 exactly, rather than rounding noise amplified by 1/ε.
///
/// Backward, with go = ∂L/∂out:
///
///     gs_i = Σ_k go[k,i] x[k,i]                    ∂L/∂s_i
///     ga_i = gs_i s_i (1 - s_i)                    ∂L/∂a_i
///     ∂L/∂w[g] += Σ_{n,i} ga_i t_i,   ∂L/∂b[g] += Σ_{n,i} ga_i
///     gt_i = ga_i w[g]                             ∂L/∂t_i
///     normalize:   ∂t_i/∂c_j = δ_ij/(σ+ε) - 1/(M(σ+ε)) - (c_i-μ)(c_j-μ)/((M-1)σ(σ+ε)²)
///                  (from ∂σ/∂c_j = (c_j-μ)/((M-1)σ)), hence
///                  gc_j = [gt_j - mean(gt) - (Σ_i gt_i t_i)(c_j-μ)/((M-1)σ)] / (σ+ε)
///                  where the last term is taken as 0 when σ == 0 (then every c_j - μ is 0);
///     no normalize: gc_j = gt_j
///     gx[k,j] = go[k,j] s_j                        through out = x s
///             + gc_j m_k                           through c_j = Σ_k m_k x[k,j]
///             + (1/M) Σ_i gc_i x[k,i]              through m_k in every c_i
///
/// The device kernels use that gc is affine in (ga, 1, c - μ): with α = 1/(σ+ε), β = -mean(gt) α,
/// γ = -(Σ gt t) α / ((M-1)σ), gc_i = α w ga_i + β + γ (c_i - μ) needs only the slab sums Σ ga and
/// Σ ga t (Σ gt = w Σ ga, Σ gt t = w Σ ga t), gathered in the pass that computes ga. The channel
/// term (1/M) Σ_i gc_i x[k,i] is then summed directly from the stored gc: expanding it into
/// per-channel sums Σ ga_i x[k,i] and Σ c_i x[k,i] would cancel catastrophically in float32 when
/// σ << |μ| (the H*W = 2 golden case lost 3 digits that way).
extension Reference {
    /// The ε added to the std (PytorchInsight's value).
    public static let sgeEpsilon = 1e-5

    /// Forward results: `out` (N,C,H,W), the gate map `gate` = s (N,G,H,W), and the small saved
    /// statistics: channel means (N,C), μ and σ per (n,g) slab.
    public struct SGEForward<T> {
        public var out: [T]
        public var gate: [T]
        public var means: [T]
        public var mu: [T]
        public var sigma: [T]
    }

    /// Gradients of SGE: grad_x (N,C,H,W), and the weight/bias gradients [G] of this call alone
    /// (the backends add them to their accumulators).
    public struct SGEGradients<T> {
        public var gradX: [T]
        public var gradWeight: [T]
        public var gradBias: [T]
    }

    static func sigmoid(_ a: Double) -> Double { 1 / (1 + exp(-a)) }

    /// Per-slab intermediates shared by forward and backward.
    struct SGESlab {
        var m: [Double]   // K channel means
        var c: [Double]   // M
        var mu: Double
        var sigma: Double
        var t: [Double]   // M
        var s: [Double]   // M
    }

    static func sgeSlab(_ x: [Double], base: Int, k K: Int, m M: Int, w: Double, b: Double, normalize: Bool) -> SGESlab {
        var m = [Double](repeating: 0, count: K)
        for k in 0..<K {
            var acc = 0.0
            for i in 0..<M { acc += x[base + k * M + i] }
            m[k] = acc / Double(M)
        }
        var c = [Double](repeating: 0, count: M)
        for i in 0..<M {
            var acc = 0.0
            for k in 0..<K { acc += m[k] * x[base + k * M + i] }
            c[i] = acc
        }
        var shifted = 0.0
        for i in 0..<M { shifted += c[i] - c[0] }
        let mu = c[0] + shifted / Double(M)
        var ss = 0.0
        for i in 0..<M { ss += (c[i] - mu) * (c[i] - mu) }
        let sigma = M > 1 ? (ss / Double(M - 1)).squareRoot() : 0
        let t = normalize ? c.map { ($0 - mu) / (sigma + sgeEpsilon) } : c
        let s = t.map { sigmoid(w * $0 + b) }
        return SGESlab(m: m, c: c, mu: mu, sigma: sigma, t: t, s: s)
    }

    /// SGE forward in Double. `shape` is (N, C, H, W); weight and bias have G entries.
    public static func sgeForward(_ x: [Double], shape: Shape, weight: [Double], bias: [Double], groups G: Int,
                                  normalize: Bool) -> SGEForward<Double> {
        let (N, C, M) = (shape.n, shape.c, shape.h * shape.w)
        let K = C / G
        var r = SGEForward<Double>(out: [Double](repeating: 0, count: x.count), gate: [Double](repeating: 0, count: N * G * M),
                                   means: [Double](repeating: 0, count: N * C), mu: [Double](repeating: 0, count: N * G),
                                   sigma: [Double](repeating: 0, count: N * G))
        for n in 0..<N {
            for g in 0..<G {
                let base = (n * C + g * K) * M
                let slab = sgeSlab(x, base: base, k: K, m: M, w: weight[g], b: bias[g], normalize: normalize)
                for k in 0..<K {
                    r.means[n * C + g * K + k] = slab.m[k]
                    for i in 0..<M { r.out[base + k * M + i] = x[base + k * M + i] * slab.s[i] }
                }
                for i in 0..<M { r.gate[(n * G + g) * M + i] = slab.s[i] }
                r.mu[n * G + g] = slab.mu
                r.sigma[n * G + g] = slab.sigma
            }
        }
        return r
    }

    /// SGE backward in Double (recomputes the forward intermediates from x).
    public static func sgeBackward(gradOut go: [Double], x: [Double], shape: Shape, weight: [Double], bias: [Double],
                                   groups G: Int, normalize: Bool) -> SGEGradients<Double> {
        let (N, C, M) = (shape.n, shape.c, shape.h * shape.w)
        let K = C / G
        var r = SGEGradients<Double>(gradX: [Double](repeating: 0, count: x.count), gradWeight: [Double](repeating: 0, count: G),
                                     gradBias: [Double](repeating: 0, count: G))
        for n in 0..<N {
            for g in 0..<G {
                let base = (n * C + g * K) * M
                let w = weight[g]
                let sl = sgeSlab(x, base: base, k: K, m: M, w: w, b: bias[g], normalize: normalize)
                var ga = [Double](repeating: 0, count: M)
                for i in 0..<M {
                    var gs = 0.0
                    for k in 0..<K { gs += go[base + k * M + i] * x[base + k * M + i] }
                    ga[i] = gs * sl.s[i] * (1 - sl.s[i])
                    r.gradWeight[g] += ga[i] * sl.t[i]
                    r.gradBias[g] += ga[i]
                }
                let gt = ga.map { $0 * w }
                var gc = gt
                if normalize {
                    let meanGt = gt.reduce(0, +) / Double(M)
                    var gtt = 0.0
                    for i in 0..<M { gtt += gt[i] * sl.t[i] }
                    for j in 0..<M {
                        let tail = sl.sigma > 0 ? gtt * (sl.c[j] - sl.mu) / (Double(M - 1) * sl.sigma) : 0
                        gc[j] = (gt[j] - meanGt - tail) / (sl.sigma + sgeEpsilon)
                    }
                }
                for k in 0..<K {
                    var acc = 0.0
                    for i in 0..<M { acc += gc[i] * x[base + k * M + i] }
                    let through = acc / Double(M)
                    for j in 0..<M {
                        r.gradX[base + k * M + j] = go[base + k * M + j] * sl.s[j] + gc[j] * sl.m[k] + through
                    }
                }
            }
        }
        return r
    }

    // MARK: Float wrappers (what ReferenceBackend calls)

    public static func sgeForward(_ x: [Float], shape: Shape, weight: [Float], bias: [Float], groups: Int,
                                  normalize: Bool) -> SGEForward<Float> {
        let r = sgeForward(x.map(Double.init), shape: shape, weight: weight.map(Double.init), bias: bias.map(Double.init),
                           groups: groups, normalize: normalize)
        return SGEForward(out: r.out.map(Float.init), gate: r.gate.map(Float.init), means: r.means.map(Float.init),
                          mu: r.mu.map(Float.init), sigma: r.sigma.map(Float.init))
    }

    public static func sgeBackward(gradOut: [Float], x: [Float], shape: Shape, weight: [Float], bias: [Float],
                                   groups: Int, normalize: Bool) -> SGEGradients<Float> {
        let r = sgeBackward(gradOut: gradOut.map(Double.init), x: x.map(Double.init), shape: shape, weight: weight.map(Double.init),
                            bias: bias.map(Double.init), groups: groups, normalize: normalize)
        return SGEGradients(gradX: r.gradX.map(Float.init), gradWeight: r.gradWeight.map(Float.init), gradBias: r.gradBias.map(Float.init))
    }
}
