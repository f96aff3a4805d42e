import SGEReference
import SGETensor
import SGETestSupport
import XCTest

/// The reference Conv2d and Linear: forward against hand-computed values, backward against central
/// finite differences of the forward in Double.
final class ConvReferenceTests: XCTestCase {
    /// Both sides are Double and the loss is bilinear in (inputs, weights), so the central
    /// difference is exact up to rounding: ~ eps·|L|/h ≈ 1e-16·10/1e-6 = 1e-9. 1e-6 leaves margin
    /// and still catches any misplaced index (errors of order 0.1 or more).
    let fdTolerance = 1e-6

    private func doubles(_ count: Int, _ rng: inout SeededRNG) -> [Double] { rng.uniforms(count).map(Double.init) }

    /// L = Σ r ⊙ y for a fixed random r, so ∂L/∂y = r.
    private func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }

    private func assertCloseD(_ a: [Double], _ b: [Double], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, what, file: file, line: line)
        let worst = zip(a, b).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst, fdTolerance, "\(what): max abs error \(worst)", file: file, line: line)
    }

    func testConvForwardHandComputed() {
        // 3×3 image 1...9, 3×3 kernel of ones, pad 1, stride 2: each output sums a 2×2 corner.
        let x = (1...9).map(Float.init)
        let s = Reference.Conv2dShape(n: 1, c: 1, h: 3, w: 3, k: 1, kh: 3, kw: 3, strideH: 2, strideW: 2, padH: 1, padW: 1)
        XCTAssertEqual(Reference.conv2dForward(x: x, weight: [Float](repeating: 1, count: 9), bias: [0.5], shape: s),
                       [12.5, 16.5, 24.5, 28.5])
        // 5×5 image 0...24, 2×2 kernel of ones dilated by 2: out[0,0] = x[0,0]+x[0,2]+x[2,0]+x[2,2].
        let x5 = (0..<25).map(Float.init)
        let d = Reference.Conv2dShape(n: 1, c: 1, h: 5, w: 5, k: 1, kh: 2, kw: 2, dilationH: 2, dilationW: 2)
        XCTAssertEqual(d.outH, 3)
        let out = Reference.conv2dForward(x: x5, weight: [1, 1, 1, 1], bias: nil, shape: d)
        XCTAssertEqual(out.count, 9)
        XCTAssertEqual(out[0], 0 + 2 + 10 + 12)
        XCTAssertEqual(out[8], 12 + 14 + 22 + 24)
        // Two input channels, two output channels: weight k sums channel c with factor (k+1)·(c+1).
        let x2: [Float] = [1, 2, 3, 4, 10, 20, 30, 40]  // [1, 2, 2, 2]
        let w2: [Float] = [1, 2, 2, 4]  // [2, 2, 1, 1]
        let p = Reference.Conv2dShape(n: 1, c: 2, h: 2, w: 2, k: 2, kh: 1, kw: 1)
        XCTAssertEqual(Reference.conv2dForward(x: x2, weight: w2, bias: [0, 1], shape: p), [21, 42, 63, 84, 43, 85, 127, 169])
    }

    func testConvBackwardMatchesFiniteDifferences() {
        var rng = SeededRNG(seed: 11)
        let shapes = [
            Reference.Conv2dShape(n: 2, c: 2, h: 5, w: 4, k: 3, kh: 3, kw: 2, strideH: 2, strideW: 1, padH: 1, padW: 0),
            Reference.Conv2dShape(n: 1, c: 3, h: 6, w: 5, k: 2, kh: 2, kw: 3, strideH: 1, strideW: 2, padH: 0, padW: 1, dilationH: 2, dilationW: 1),
            Reference.Conv2dShape(n: 2, c: 3, h: 3, w: 3, k: 2, kh: 1, kw: 1),
        ]
        for s in shapes {
            let x = doubles(s.inputCount, &rng), w = doubles(s.weightCount, &rng), b = doubles(s.k, &rng)
            let r = doubles(s.outputCount, &rng)
            let gx = Reference.conv2dBackwardInput(gradOut: r, weight: w, shape: s)
            let (gw, gb) = Reference.conv2dBackwardWeight(gradOut: r, x: x, shape: s)
            assertCloseD(gx, finiteDifference(x) { dot(r, Reference.conv2dForward(x: $0, weight: w, bias: b, shape: s)) }, "grad x, \(s)")
            assertCloseD(gw, finiteDifference(w) { dot(r, Reference.conv2dForward(x: x, weight: $0, bias: b, shape: s)) }, "grad w, \(s)")
            assertCloseD(gb, finiteDifference(b) { dot(r, Reference.conv2dForward(x: x, weight: w, bias: $0, shape: s)) }, "grad b, \(s)")
        }
    }

    func testLinearForwardHandComputed() {
        // x [2, 3], W [2, 3] (PyTorch layout), y = x·Wᵀ + b.
        let y = Reference.linearForward(x: [1, 2, 3, 4, 5, 6] as [Float], weight: [1, 0, -1, 2, 1, 0], bias: [10, 20],
                                        n: 2, inFeatures: 3, outFeatures: 2)
        let want: [Float] = [8, 24, 8, 33]  // [1-3+10, 2+2+20, 4-6+10, 8+5+20]
        XCTAssertEqual(y, want)
    }

    func testLinearBackwardMatchesFiniteDifferences() {
        var rng = SeededRNG(seed: 12)
        let (n, i, o) = (3, 5, 4)
        let x = doubles(n * i, &rng), w = doubles(o * i, &rng), b = doubles(o, &rng), r = doubles(n * o, &rng)
        let g = Reference.linearBackward(gradOut: r, x: x, weight: w, n: n, inFeatures: i, outFeatures: o)
        func loss(_ x: [Double], _ w: [Double], _ b: [Double]) -> Double {
            dot(r, Reference.linearForward(x: x, weight: w, bias: b, n: n, inFeatures: i, outFeatures: o))
        }
        assertCloseD(g.x, finiteDifference(x) { loss($0, w, b) }, "linear grad x")
        assertCloseD(g.weight, finiteDifference(w) { loss(x, $0, b) }, "linear grad w")
        assertCloseD(g.bias, finiteDifference(b) { loss(x, w, $0) }, "linear grad b")
    }
}
