import Foundation
import SGEReference
import SGETensor
import SGETestSupport
import XCTest

final class SGEReferenceTests: XCTestCase {
    /// Central differences in Double with h = 1e-6 are accurate to ~1e-9 relative (truncation h²,
    /// rounding 1e-16/h); 1e-6 leaves room for the 1/(σ+ε) amplification on these small slabs.
    static let fdAtol = 1e-6
    static let fdRtol = 1e-6

    func randomDoubles(_ n: Int, seed: UInt64, scale: Float = 1) -> [Double] {
        var rng = SeededRNG(seed: seed)
        return (0..<n).map { _ in Double(rng.normal() * scale) }
    }

    /// L = Σ go ⊙ out; checks grad_x, grad_weight, grad_bias against finite differences.
    func checkGradients(_ shape: Shape, groups: Int, normalize: Bool, seed: UInt64, file: StaticString = #filePath, line: UInt = #line) {
        let x = randomDoubles(shape.count, seed: seed)
        let go = randomDoubles(shape.count, seed: seed + 1)
        let w = randomDoubles(groups, seed: seed + 2)
        let b = randomDoubles(groups, seed: seed + 3)
        // normalize = false feeds c (≈ K m² in size) straight into the sigmoid: keep it out of saturation.
        let wScaled = normalize ? w : w.map { $0 * 0.3 }
        func loss(_ x: [Double], _ w: [Double], _ b: [Double]) -> Double {
            let out = Reference.sgeForward(x, shape: shape, weight: w, bias: b, groups: groups, normalize: normalize).out
            return zip(out, go).reduce(0) { $0 + $1.0 * $1.1 }
        }
        let g = Reference.sgeBackward(gradOut: go, x: x, shape: shape, weight: wScaled, bias: b, groups: groups, normalize: normalize)
        let fx = finiteDifference(x) { loss($0, wScaled, b) }
        let fw = finiteDifference(wScaled) { loss(x, $0, b) }
        let fb = finiteDifference(b) { loss(x, wScaled, $0) }
        let what = "\(shape) G=\(groups) normalize=\(normalize)"
        assertClose(g.gradX.map(Float.init), fx.map(Float.init), shape: shape, atol: Self.fdAtol, rtol: Self.fdRtol, "grad_x \(what)", file: file, line: line)
        assertClose(g.gradWeight.map(Float.init), fw.map(Float.init), atol: Self.fdAtol, rtol: Self.fdRtol, "grad_weight \(what)", file: file, line: line)
        assertClose(g.gradBias.map(Float.init), fb.map(Float.init), atol: Self.fdAtol, rtol: Self.fdRtol, "grad_bias \(what)", file: file, line: line)
    }

    func testBackwardMatchesFiniteDifferences() {
        checkGradients([2, 4, 2, 3], groups: 2, normalize: true, seed: 1)
        checkGradients([1, 3, 1, 2], groups: 1, normalize: true, seed: 2)   // H*W = 2, G = 1
        checkGradients([1, 3, 2, 2], groups: 3, normalize: true, seed: 3)   // G = C (K = 1)
        checkGradients([1, 6, 3, 1], groups: 2, normalize: true, seed: 4)
    }

    func testBackwardWithoutNormalizationMatchesFiniteDifferences() {
        checkGradients([2, 4, 2, 3], groups: 2, normalize: false, seed: 5)
        checkGradients([1, 2, 1, 1], groups: 1, normalize: false, seed: 6)   // H*W = 1 is fine without the std
    }

    func testForwardMatchesDefinitionOnHandExample() {
        // One slab, K = 1, M = 2: m = 2, c = (2, 6), μ = 4, σ = sqrt(8) , t = ±2/(σ+ε).
        let r = Reference.sgeForward([1.0, 3.0], shape: [1, 1, 1, 2], weight: [0.5], bias: [0.25], groups: 1, normalize: true)
        let sigma = 8.0.squareRoot()
        let t = 2 / (sigma + Reference.sgeEpsilon)
        let s = [1 / (1 + exp(-(-0.5 * t + 0.25))), 1 / (1 + exp(-(0.5 * t + 0.25)))]
        XCTAssertEqual(r.mu[0], 4, accuracy: 1e-12)
        XCTAssertEqual(r.sigma[0], sigma, accuracy: 1e-12)
        XCTAssertEqual(r.out[0], 1 * s[0], accuracy: 1e-12)
        XCTAssertEqual(r.out[1], 3 * s[1], accuracy: 1e-12)
        XCTAssertEqual(r.gate, s)
    }

    func testConstantSlabIsFiniteWithZeroStd() {
        var x = randomDoubles(2 * 4 * 9, seed: 7)
        for i in 0..<18 { x[i] = i < 9 ? 0.75 : -1.5 }   // sample 0, group 0 spatially constant
        let go = randomDoubles(x.count, seed: 8)
        let f = Reference.sgeForward(x, shape: [2, 4, 3, 3], weight: [0.7, -0.4], bias: [1, 0.2], groups: 2, normalize: true)
        XCTAssertEqual(f.sigma[0], 0, "a constant slab must give σ = 0 exactly")
        let g = Reference.sgeBackward(gradOut: go, x: x, shape: [2, 4, 3, 3], weight: [0.7, -0.4], bias: [1, 0.2], groups: 2, normalize: true)
        XCTAssertTrue((f.out + g.gradX + g.gradWeight + g.gradBias).allSatisfy { $0.isFinite })
    }
}
