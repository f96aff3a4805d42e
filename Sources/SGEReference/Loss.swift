import SGETensor

/// Softmax cross-entropy over logits [N, K] with integer labels (kernel in `Kernels/loss.cl`):
///
///     m_n = max_k z_nk,   lse_n = m_n + log Σ_k exp(z_nk - m_n)          (max-subtracted: no overflow)
///     loss = (1/N) Σ_n (lse_n - z_n,y_n)
///     ∂loss/∂z_nk = (softmax(z_n)_k - [k == y_n]) / N,   softmax(z_n)_k = exp(z_nk - lse_n)
///     correct = #{n : argmax_k z_nk == y_n}   (ties: the first maximum)
extension Reference {
    /// Loss, number correct and ∂loss/∂logits in Double; labels must be in 0..<k.
    public static func softmaxCrossEntropy(_ logits: [Double], labels: [Int], n: Int, k: Int)
        -> (loss: Double, correct: Int, gradLogits: [Double]) {
        var loss = 0.0, correct = 0
        var grad = [Double](repeating: 0, count: n * k)
        for row in 0..<n {
            var m = -Double.infinity, best = 0
            for j in 0..<k where logits[row * k + j] > m { m = logits[row * k + j]; best = j }
            var sum = 0.0
            for j in 0..<k { sum += _exp(logits[row * k + j] - m) }
            let lse = m + _logd(sum)
            loss += lse - logits[row * k + labels[row]]
            if best == labels[row] { correct += 1 }
            for j in 0..<k {
                grad[row * k + j] = (_exp(logits[row * k + j] - lse) - (j == labels[row] ? 1 : 0)) / Double(n)
            }
        }
        return (loss / Double(n), correct, grad)
    }

    /// The class indices of float labels; throws unless each is an integer in 0..<classes.
    public static func classIndices(_ labels: [Float], classes: Int, op: String = "softmaxCrossEntropy") throws -> [Int] {
        try labels.withUnsafeBufferPointer { try checkClassIndices($0, classes: classes, op: op) }
        return labels.map { Int($0) }
    }

    /// Throws unless each label is an integer in 0..<classes (classIndices without building the array).
    public static func checkClassIndices(_ labels: UnsafeBufferPointer<Float>, classes: Int, op: String = "softmaxCrossEntropy") throws {
        for (i, v) in labels.enumerated() {
            guard v.isFinite, v == v.rounded(), v >= 0, Int(v) < classes else {
                throw SGEError.invalidArgument("\(op): label[\(i)] = \(v) is not a class index in 0..<\(classes)")
            }
        }
    }

    /// Float wrapper over logits [N, K] and float labels [N]; validates the labels.
    public static func softmaxCrossEntropy(_ logits: [Float], labels: [Float], n: Int, k: Int) throws
        -> (loss: Float, correct: Float, gradLogits: [Float]) {
        let r = softmaxCrossEntropy(logits.map(Double.init), labels: try classIndices(labels, classes: k), n: n, k: k)
        return (Float(r.loss), Float(r.correct), r.gradLogits.map { Float($0) })
    }
}

#if canImport(Glibc)
import Glibc
@inline(__always) fileprivate func _exp(_ x: Double) -> Double { Glibc.exp(x) }
@inline(__always) fileprivate func _logd(_ x: Double) -> Double { Glibc.log(x) }
#elseif canImport(Darwin)
import Darwin
@inline(__always) fileprivate func _exp(_ x: Double) -> Double { Darwin.exp(x) }
@inline(__always) fileprivate func _logd(_ x: Double) -> Double { Darwin.log(x) }
#endif
