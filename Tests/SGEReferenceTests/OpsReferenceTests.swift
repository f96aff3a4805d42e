import SGEReference
import SGETensor
import SGETestSupport
import XCTest

/// The reference BatchNorm, pooling, cross-entropy and SGD: backward against central finite differences
/// in Double, running statistics and SGD against hand-computed values.
final class OpsReferenceTests: XCTestCase {
    /// Central differences in Double with h = 1e-6 have truncation error O(h²·f''') ≈ 1e-12 and rounding
    /// error ≈ 1e-16·|f|/h ≈ 1e-10 for these O(1) losses, so 1e-6 leaves a wide margin while still catching
    /// any wrong term (those are O(1e-2) or larger).
    let fdTolerance = 1e-6
    /// Hand-computed values are exact decimals; the Float wrappers round to float32 (ulp ≈ 6e-8 near 1).
    let handTolerance = 1e-6

    var rng = SeededRNG(seed: 42)

    func randoms(_ n: Int, std: Double = 1) -> [Double] { (0..<n).map { _ in Double(rng.normal()) * std } }

    func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }

    func assertCloseD(_ a: [Double], _ b: [Double], _ message: String, file: StaticString = #filePath, line: UInt = #line) {
        assertClose(a.map { Float($0) }, b.map { Float($0) }, atol: fdTolerance, rtol: fdTolerance, message, file: file, line: line)
    }

    // MARK: BatchNorm

    func testBatchNormTrainingBackwardMatchesFiniteDifferences() {
        let (n, c, hw) = (2, 3, 5)
        let x = randoms(n * c * hw, std: 2), gamma = randoms(c), beta = randoms(c), w = randoms(n * c * hw)
        let eps = 1e-5
        func loss(_ x: [Double], _ gamma: [Double], _ beta: [Double]) -> Double {
            dot(w, Reference.batchNormForwardTraining(x, n: n, c: c, hw: hw, gamma: gamma, beta: beta, eps: eps).out)
        }
        let fwd = Reference.batchNormForwardTraining(x, n: n, c: c, hw: hw, gamma: gamma, beta: beta, eps: eps)
        let g = Reference.batchNormBackward(w, x: x, n: n, c: c, hw: hw, gamma: gamma, mean: fwd.mean, invstd: fwd.invstd, training: true)
        assertCloseD(g.gradX, finiteDifference(x) { loss($0, gamma, beta) }, "dx")
        assertCloseD(g.gradGamma, finiteDifference(gamma) { loss(x, $0, beta) }, "dgamma")
        assertCloseD(g.gradBeta, finiteDifference(beta) { loss(x, gamma, $0) }, "dbeta")
    }

    func testBatchNormEvalBackwardMatchesFiniteDifferences() {
        let (n, c, hw) = (3, 2, 2)
        let x = randoms(n * c * hw), gamma = randoms(c), beta = randoms(c), w = randoms(n * c * hw)
        let mean = randoms(c), invstd = [0.7, 1.3]
        func loss(_ x: [Double], _ gamma: [Double], _ beta: [Double]) -> Double {
            dot(w, Reference.batchNormNormalize(x, n: n, c: c, hw: hw, gamma: gamma, beta: beta, mean: mean, invstd: invstd))
        }
        let g = Reference.batchNormBackward(w, x: x, n: n, c: c, hw: hw, gamma: gamma, mean: mean, invstd: invstd, training: false)
        assertCloseD(g.gradX, finiteDifference(x) { loss($0, gamma, beta) }, "dx")
        assertCloseD(g.gradGamma, finiteDifference(gamma) { loss(x, $0, beta) }, "dgamma")
        assertCloseD(g.gradBeta, finiteDifference(beta) { loss(x, gamma, $0) }, "dbeta")
    }

    /// x [N=2, C=2, H=1, W=2]: channel 0 holds 1, 2, 3, 6 (mean 3, biased var 3.5, unbiased 14/3);
    /// channel 1 holds 0, 0, 4, 0 (mean 1, biased var 3, unbiased 4). Momentum 0.1.
    func testBatchNormRunningStatisticsByHand() {
        let x: [Float] = [1, 2, 0, 0, 3, 6, 4, 0]
        var rm: [Float] = [0.5, -1], rv: [Float] = [1, 2]
        let r = Reference.batchNormForward(x, shape: [2, 2, 1, 2], gamma: [1, 2], beta: [0, 0.5], runningMean: &rm, runningVar: &rv,
                                           training: true, momentum: 0.1, eps: 0)
        assertClose(rm, [0.9 * 0.5 + 0.1 * 3, 0.9 * -1 + 0.1 * 1], atol: handTolerance, rtol: 0, "running mean")
        assertClose(rv, [0.9 * 1 + 0.1 * 14 / 3, 0.9 * 2 + 0.1 * 4], atol: handTolerance, rtol: 0, "running var (unbiased)")
        assertClose(r.mean, [3, 1], atol: handTolerance, rtol: 0, "batch mean")
        assertClose(r.invstd, [1 / Float(3.5).squareRoot(), 1 / Float(3).squareRoot()], atol: handTolerance, rtol: 0, "invstd (biased)")
        // y[n=1, c=1, w=0] = 2 · (4 - 1) / sqrt(3) + 0.5
        XCTAssertEqual(r.out[6], 2 * 3 / Float(3).squareRoot() + 0.5, accuracy: Float(handTolerance))

        // Eval uses (and does not change) the running statistics.
        let before = (rm, rv)
        let e = Reference.batchNormForward(x, shape: [2, 2, 1, 2], gamma: [1, 2], beta: [0, 0.5], runningMean: &rm, runningVar: &rv,
                                           training: false, momentum: 0.1, eps: 0)
        XCTAssertEqual(rm, before.0)
        XCTAssertEqual(rv, before.1)
        XCTAssertEqual(e.out[6], 2 * (4 - rm[1]) / rv[1].squareRoot() + 0.5, accuracy: Float(handTolerance))
    }

    // MARK: Pooling

    func testAvgPoolBackwardMatchesFiniteDifferences() {
        let shape: Shape = [1, 2, 5, 4]
        for (k, s, p) in [(3, 2, 1), (2, 1, 0), (2, 2, 1)] {
            let oh = Reference.poolOutputSize(5, kernel: k, stride: s, padding: p), ow = Reference.poolOutputSize(4, kernel: k, stride: s, padding: p)
            let x = randoms(shape.count), w = randoms(2 * oh * ow)
            let fd = finiteDifference(x) { dot(w, Reference.avgPoolForward($0, shape: shape, kernel: k, stride: s, padding: p)) }
            assertCloseD(Reference.avgPoolBackward(w, inputShape: shape, kernel: k, stride: s, padding: p), fd, "avg pool k\(k) s\(s) p\(p)")
        }
    }

    /// count_include_pad = True: a corner window with padding 1 divides by k² even though only 4 of its 9 cells are inside.
    func testAvgPoolCountsPadding() {
        let out = Reference.avgPoolForward([Double](repeating: 1, count: 9), shape: [1, 1, 3, 3], kernel: 3, stride: 2, padding: 1)
        XCTAssertEqual(out, [4.0 / 9, 4.0 / 9, 4.0 / 9, 4.0 / 9])
    }

    func testGlobalAvgPoolBackwardMatchesFiniteDifferences() {
        let shape: Shape = [2, 3, 2, 3]
        let x = randoms(shape.count), w = randoms(6)
        let fd = finiteDifference(x) { dot(w, Reference.globalAvgPoolForward($0, shape: shape)) }
        assertCloseD(Reference.globalAvgPoolBackward(w, inputShape: shape), fd, "global avg pool")
    }

    /// Random normals are distinct by far more than h, so no window has a near-tie and max is smooth there.
    func testMaxPoolBackwardMatchesFiniteDifferences() {
        let shape: Shape = [2, 1, 5, 6]
        for (k, s, p) in [(3, 2, 1), (2, 1, 0), (3, 1, 1)] {
            let x = randoms(shape.count)
            let fwd = Reference.maxPoolForward(x, shape: shape, kernel: k, stride: s, padding: p)
            let outShape = Shape([2, 1, Reference.poolOutputSize(5, kernel: k, stride: s, padding: p), Reference.poolOutputSize(6, kernel: k, stride: s, padding: p)])
            let w = randoms(outShape.count)
            let fd = finiteDifference(x) { dot(w, Reference.maxPoolForward($0, shape: shape, kernel: k, stride: s, padding: p).out) }
            assertCloseD(Reference.maxPoolBackward(w, argmax: fwd.argmax, outputShape: outShape, inputShape: shape), fd, "max pool k\(k) s\(s) p\(p)")
        }
    }

    /// Padding acts as -inf (an all-negative image keeps its values) and ties go to the first maximum.
    func testMaxPoolPaddingAndTies() {
        let neg = Reference.maxPoolForward([-5, -4, -3, -2] as [Double], shape: [1, 1, 2, 2], kernel: 2, stride: 1, padding: 1)
        XCTAssertEqual(neg.out, [-5, -4, -4, -3, -2, -2, -3, -2, -2])
        XCTAssertEqual(neg.argmax, [0, 1, 1, 2, 3, 3, 2, 3, 3])
        let tie = Reference.maxPoolForward([7, 7, 7, 7] as [Double], shape: [1, 1, 2, 2], kernel: 2, stride: 2, padding: 0)
        XCTAssertEqual(tie.argmax, [0])
    }

    // MARK: Cross-entropy

    func testSoftmaxCrossEntropyMatchesFiniteDifferences() {
        let (n, k) = (3, 5)
        let z = randoms(n * k, std: 3), labels = [4, 0, 2]
        let r = Reference.softmaxCrossEntropy(z, labels: labels, n: n, k: k)
        let fd = finiteDifference(z) { Reference.softmaxCrossEntropy($0, labels: labels, n: n, k: k).loss }
        assertCloseD(r.gradLogits, fd, "cross-entropy gradient")
    }

    func testSoftmaxCrossEntropyByHand() throws {
        // Float path. Rows: a tie (first index wins), a huge logit (max subtraction keeps it finite), a confident hit.
        let r = try Reference.softmaxCrossEntropy([1, 1, 0, 1000, 0, 0, 0, 0, 5] as [Float], labels: [0, 1, 2] as [Float], n: 3, k: 3)
        // log(e + e + 1) - 1 = log(2 + e^-1) ; 1000 + log(1 + 2e^-1000) - 0 ≈ 1000 ; log(2 + e^5) - 5
        let expected = (log(2 + exp(-1.0)) + 1000 + log(2 + exp(5.0)) - 5) / 3
        XCTAssertEqual(Double(r.loss), expected, accuracy: 1e-4)   // float32 ulp at 333 is 3e-5
        XCTAssertEqual(r.correct, 2)   // row 0 (tie → index 0 = label) and row 2; not row 1
        XCTAssertEqual(r.gradLogits[4], -1.0 / 3, accuracy: 1e-7)   // softmax ≈ 0 at the label
    }

    func testSoftmaxCrossEntropyRejectsBadLabels() {
        for bad: Float in [3, -1, 1.5, .nan] {
            XCTAssertThrowsError(try Reference.softmaxCrossEntropy([0, 0, 0], labels: [bad], n: 1, k: 3), "label \(bad)") { error in
                guard case SGEError.invalidArgument(let m) = error else { return XCTFail("\(error)") }
                XCTAssertTrue(m.contains("label[0]"), m)
            }
        }
    }

    // MARK: SGD

    /// p = 1, g = 0.5 on both steps, lr = 0.1. Hand-computed with PyTorch's rule.
    func testSGDTwoStepsByHand() {
        struct Case { let momentum, dampening, wd: Float; let nesterov: Bool; let p1, p2, buf2: Double }
        let cases = [
            // d1 = 0.6, buf = 0.6, p = 0.94; d2 = 0.594, buf = 0.54 + 0.594 = 1.134, p = 0.94 - 0.1134
            Case(momentum: 0.9, dampening: 0, wd: 0.1, nesterov: false, p1: 0.94, p2: 0.8266, buf2: 1.134),
            // d1 = 0.6 + 0.9·0.6 = 1.14, p = 0.886; d2 = 0.5886, buf = 0.54 + 0.5886 = 1.1286, d = 0.5886 + 1.01574
            Case(momentum: 0.9, dampening: 0, wd: 0.1, nesterov: true, p1: 0.886, p2: 0.725566, buf2: 1.1286),
            // buf1 = 0.5 (no dampening on the first step), p = 0.95; buf2 = 0.45 + 0.25 = 0.7, p = 0.88
            Case(momentum: 0.9, dampening: 0.5, wd: 0, nesterov: false, p1: 0.95, p2: 0.88, buf2: 0.7),
            // momentum 0: plain SGD with weight decay; the buffer stays untouched (7)
            Case(momentum: 0, dampening: 0, wd: 0.1, nesterov: false, p1: 0.94, p2: 0.8806, buf2: 7),
        ]
        for c in cases {
            var p: [Float] = [1], buf: [Float] = [7]
            Reference.sgdStep(&p, grad: [0.5], momentumBuffer: &buf, lr: 0.1, momentum: c.momentum, dampening: c.dampening,
                              weightDecay: c.wd, nesterov: c.nesterov, firstStep: true)
            XCTAssertEqual(Double(p[0]), c.p1, accuracy: handTolerance, "\(c) step 1")
            Reference.sgdStep(&p, grad: [0.5], momentumBuffer: &buf, lr: 0.1, momentum: c.momentum, dampening: c.dampening,
                              weightDecay: c.wd, nesterov: c.nesterov, firstStep: false)
            XCTAssertEqual(Double(p[0]), c.p2, accuracy: handTolerance, "\(c) step 2")
            XCTAssertEqual(Double(buf[0]), c.buf2, accuracy: handTolerance, "\(c) buffer")
        }
    }
}
