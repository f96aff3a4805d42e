@testable import SGEEngine
import SGEOpenCL
import SGEReference
import SGETensor
import SGEDeviceTestSupport
import XCTest

/// Winograd F(2×2, 3×3) (ConvWinograd.swift, winograd.cl, winograd_cpu.cl) against the Double
/// reference convolution, through the wide algorithm's hook (`ConvWorkspace.winograd`), on the fused
/// CPU-driver kernel and on the portable path (input transform, CLBlast GEMMs, output transform).
///
/// Tolerance. Winograd does not sum the products w·x: it sums transformed values. A 4×4 input patch
/// becomes V = BᵀdB (sums of 4 inputs), the filter U = GgGᵀ (sums of up to 9 weights, scaled by ¼),
/// the channel sums run over U⊙V, and the output AᵀMA adds up to 9 of the 16 channel sums, whose
/// large terms largely cancel. So the rounding error is bounded not by a multiple of u·|out| but of
/// u·S, S = Σ|w||x| (+ |b|), the magnitude of the terms, which is what we compare against, element
/// by element: |device − reference| ≤ `winogradTol`·u·√L·S, L = Cin·9 the length of the sum, u =
/// 2⁻²⁴. Measured worst ratios (these tests print them): 0.42 (output) and 1.21 (grad input) over the
/// awkward shapes, where L is as small as 9; 0.076 and 0.064 at 64→64 (L = 576), where the direct
/// wide path gives 0.18 and 0.047 on the same data, so F(2×2, 3×3)'s extra rounding is within the
/// spread of summation orders here. 8 leaves a 6× margin over the worst and stays far below a wrong
/// tap: one dropped or misplaced product costs ≈ S/L on average, a ratio ≈ 1/(u·L^1.5): ≈ 10³ at
/// L = 576, still ≈ 50 at L = 9·512 (and ≈ 10⁵ at the sizes tested here).
final class WinogradTests: XCTestCase {
    static let winogradTol = 8.0
    static let winogradGWTol = 8.0
    private var worstGW = 0.0
    static let u = 0x1p-24

    private func random(_ count: Int, seed: UInt64) -> [Float] {
        var rng = SeededRNG(seed: seed)
        return rng.uniforms(count)
    }

    /// The worst |a − r| / (u·√L·S) over the elements, and a failure when it exceeds `tol` (`winogradTol`).
    @discardableResult
    private func checkScaled(_ actual: [Float], _ reference: [Double], scale: [Double], length: Int, tol: Double = winogradTol,
                             _ what: String, file: StaticString = #filePath, line: UInt = #line) -> Double {
        XCTAssertEqual(actual.count, reference.count, "\(what): count", file: file, line: line)
        let unit = Self.u * Double(length).squareRoot()
        var worst = 0.0, worstIndex = 0
        for i in actual.indices {
            let a = Double(actual[i])
            guard a.isFinite else {
                XCTFail("\(what): non-finite \(a) at \(i)", file: file, line: line)
                return .infinity
            }
            let ratio = abs(a - reference[i]) / (unit * max(scale[i], 1e-30))
            if ratio > worst { (worst, worstIndex) = (ratio, i) }
        }
        if worst > tol {
            XCTFail("\(what): error \(worst)·u·√L·S at element \(worstIndex) (device \(actual[worstIndex]), reference \(reference[worstIndex]), S \(scale[worstIndex])) exceeds \(tol)",
                    file: file, line: line)
        }
        return worst
    }

    /// Forward and backward of one convolution with Winograd on, against the Double reference:
    /// output and grad input with the scaled rule, grad weight (the wide path's, after Winograd's
    /// grad input in the same call) with ConvTests' rule. Returns the worst output/grad-input ratios.
    /// With `winogradGW` the grad weight is Winograd's (`ConvPath.winogradFull`), checked with the
    /// scaled rule and `winogradGWTol`; its worst ratio goes to `worstGW`.
    @discardableResult
    private func check(_ device: OpenCLBackend, n: Int, c: Int, h: Int, w: Int, k: Int, padH: Int, padW: Int, bias useBias: Bool = true,
                       winogradGW: Bool = false, _ what: String, file: StaticString = #filePath, line: UInt = #line) throws -> (Double, Double) {
        let params = Conv2dParams(strideH: 1, strideW: 1, padH: padH, padW: padW)
        let s = Reference.Conv2dShape(n: n, c: c, h: h, w: w, k: k, kh: 3, kw: 3, padH: padH, padW: padW)
        XCTAssertTrue(OpenCLBackend.winogradApplies(s), file: file, line: line)
        let (xs, ws, os): (Shape, Shape, Shape) = ([n, c, h, w], [k, c, 3, 3], [n, k, s.outH, s.outW])
        let (x, wv, b, go) = (random(xs.count, seed: 31), random(ws.count, seed: 32), random(k, seed: 33), random(os.count, seed: 34))
        let gw0 = random(ws.count, seed: 35)
        let label = "\(what): \(s)"

        let out = try device.conv2dForward(try device.tensor(x, xs, label: "x"), weight: try device.tensor(wv, ws, label: "w"),
                                           bias: useBias ? try device.tensor(b, [k], label: "b") : nil, params: params)
        let gw = try device.tensor(gw0, ws, label: "gw")
        let gx = try device.conv2dBackward(try device.tensor(go, os, label: "go"), x: try device.tensor(x, xs, label: "x"),
                                           weight: try device.tensor(wv, ws, label: "w"), params: params, gradWeight: gw,
                                           gradBias: nil, needInputGrad: true)

        let (xd, wd, bd, god) = (x.map(Double.init), wv.map(Double.init), b.map(Double.init), go.map(Double.init))
        let (ax, aw, ab, ago) = (xd.map(abs), wd.map(abs), bd.map(abs), god.map(abs))
        let refOut = Reference.conv2dForward(x: xd, weight: wd, bias: useBias ? bd : nil, shape: s)
        let scaleOut = Reference.conv2dForward(x: ax, weight: aw, bias: useBias ? ab : nil, shape: s)
        let refGx = Reference.conv2dBackwardInput(gradOut: god, weight: wd, shape: s)
        let scaleGx = Reference.conv2dBackwardInput(gradOut: ago, weight: aw, shape: s)
        let worstOut = checkScaled(try out.read(), refOut, scale: scaleOut, length: c * 9, "\(label): output", file: file, line: line)
        let worstGx = checkScaled(try gx!.read(), refGx, scale: scaleGx, length: k * 9, "\(label): grad input", file: file, line: line)
        if winogradGW {
            XCTAssertEqual(device.convChoice(s, .backward).path, .winogradFull, "\(label): backward path", file: file, line: line)
            // Onto gw0: the reference sum plus gw0, S = Σ|go||x| + |gw0| over L = N·OH·OW.
            let refGw = zip(Reference.conv2dBackwardWeight(gradOut: god, x: xd, shape: s).weight, gw0).map { $0 + Double($1) }
            let scaleGw = zip(Reference.conv2dBackwardWeight(gradOut: ago, x: ax, shape: s).weight, gw0).map { $0 + Double(abs($1)) }
            let r = checkScaled(try gw.read(), refGw, scale: scaleGw, length: n * s.outH * s.outW, tol: Self.winogradGWTol,
                                "\(label): grad weight (winograd)", file: file, line: line)
            worstGW = max(worstGW, r)
            return (worstOut, worstGx)
        }
        // Grad weight accumulates onto gw0 by the wide path (ConvTests' float32 GEMM rule).
        let refGw = zip(Reference.conv2dBackwardWeight(gradOut: go, x: x, shape: s).weight, gw0).map { $0 + $1 }
        assertClose(try gw.read(), refGw, atol: 2e-4, rtol: 1e-4, "\(label): grad weight", file: file, line: line)
        return (worstOut, worstGx)
    }

    /// The awkward shapes, run on one path: batch 1, 1×1 and 2×3 images (every tile overhangs),
    /// odd H/W, pad 0/1/2 and mixed, C = 1, K = 1, channel counts that are not multiples of the
    /// output block (8) or a vector (16), and shapes spanning several work-items (chunks of 32 tiles
    /// that cross tile rows and images).
    private func awkwardShapes(_ device: OpenCLBackend, _ path: String, winogradGW: Bool = false) throws -> (Double, Double) {
        var worst = (0.0, 0.0)
        func note(_ r: (Double, Double)) { worst = (max(worst.0, r.0), max(worst.1, r.1)) }
        func check(_ device: OpenCLBackend, n: Int, c: Int, h: Int, w: Int, k: Int, padH: Int, padW: Int, bias: Bool = true,
                   _ what: String, file: StaticString = #filePath, line: UInt = #line) throws -> (Double, Double) {
            try self.check(device, n: n, c: c, h: h, w: w, k: k, padH: padH, padW: padW, bias: bias, winogradGW: winogradGW, what,
                           file: file, line: line)
        }
        note(try check(device, n: 1, c: 1, h: 1, w: 1, k: 1, padH: 1, padW: 1, "\(path) 1x1 image"))
        note(try check(device, n: 1, c: 1, h: 5, w: 7, k: 1, padH: 0, padW: 0, "\(path) C = K = 1 pad 0"))
        note(try check(device, n: 1, c: 1, h: 5, w: 7, k: 1, padH: 1, padW: 1, bias: false, "\(path) C = K = 1 pad 1"))
        note(try check(device, n: 2, c: 3, h: 2, w: 3, k: 5, padH: 1, padW: 1, "\(path) 2x3 image"))
        note(try check(device, n: 1, c: 5, h: 7, w: 5, k: 3, padH: 2, padW: 2, "\(path) pad 2"))
        note(try check(device, n: 2, c: 4, h: 6, w: 9, k: 7, padH: 0, padW: 1, "\(path) pad (0, 1)"))
        note(try check(device, n: 3, c: 17, h: 9, w: 11, k: 19, padH: 1, padW: 1, "\(path) 17 -> 19"))
        note(try check(device, n: 2, c: 33, h: 16, w: 16, k: 9, padH: 0, padW: 0, bias: false, "\(path) 33 -> 9 pad 0"))
        note(try check(device, n: 5, c: 7, h: 3, w: 4, k: 2, padH: 1, padW: 1, "\(path) batch 5 of 3x4"))
        note(try check(device, n: 2, c: 24, h: 20, w: 21, k: 40, padH: 1, padW: 1, "\(path) 24 -> 40, 20x21"))
        return worst
    }

    private func withWinograd(_ device: OpenCLBackend, fused: Bool?, weightGrad: Bool? = nil, _ body: () throws -> Void) rethrows {
        let ws = device.convWorkspace
        let saved = (ws.algorithm, ws.winograd, OpenCLBackend.winogradFused, ws.columnLimitBytes, ws.winogradWeightGrad)
        let items = OpenCLBackend.winogradWeightGradItemsPerUnit
        defer {
            (ws.algorithm, ws.winograd, OpenCLBackend.winogradFused, ws.columnLimitBytes, ws.winogradWeightGrad) = saved
            OpenCLBackend.winogradWeightGradItemsPerUnit = items
        }
        (ws.algorithm, ws.winograd, OpenCLBackend.winogradFused, ws.winogradWeightGrad) = (.wide, true, fused, weightGrad)
        try body()
    }

    /// The weight gradient by Winograd (winograd_gw_partials + winograd_gw_finish, `.winogradFull`)
    /// against the Double reference, accumulated onto a random gw0, on the awkward shapes, with the
    /// tiles split across one work-item per chunk of 32 (many partials), the default split, and one
    /// work-item per device unit (several chunks per work-item, crossing tile rows and images).
    func testWinogradWeightGradAgainstReference() throws {
        let device = try testDevice()
        try withWinograd(device, fused: true, weightGrad: true) {
            worstGW = 0
            for items in [1000, OpenCLBackend.winogradWeightGradItemsPerUnit, 1] {
                OpenCLBackend.winogradWeightGradItemsPerUnit = items
                try awkwardShapes(device, "winograd gw, \(items) items/unit", winogradGW: true)
                try check(device, n: 5, c: 3, h: 20, w: 21, k: 6, padH: 1, padW: 1, winogradGW: true, "winograd gw, batch 5 of 20x21")
                try check(device, n: 3, c: 64, h: 8, w: 8, k: 64, padH: 1, padW: 1, winogradGW: true, "winograd gw, 64 -> 64 8x8")
                // Many small images (the data-parallel test's 5×5 inputs: planes of 5, 3 and 2).
                try check(device, n: 128, c: 16, h: 5, w: 5, k: 16, padH: 1, padW: 1, winogradGW: true, "winograd gw, 128 of 5x5")
                try check(device, n: 64, c: 32, h: 3, w: 3, k: 32, padH: 1, padW: 1, winogradGW: true, "winograd gw, 64 of 3x3")
                try check(device, n: 128, c: 64, h: 2, w: 2, k: 64, padH: 1, padW: 1, winogradGW: true, "winograd gw, 128 of 2x2")
                try check(device, n: 128, c: 32, h: 3, w: 3, k: 32, padH: 1, padW: 1, winogradGW: true, "winograd gw, 128 of 3x3")
                try check(device, n: 64, c: 16, h: 5, w: 5, k: 16, padH: 1, padW: 1, winogradGW: true, "winograd gw, 64 of 5x5")
                try check(device, n: 64, c: 64, h: 2, w: 2, k: 64, padH: 1, padW: 1, winogradGW: true, "winograd gw, 64 of 2x2")
            }
            print("winograd grad weight: worst error ratio \(worstGW) (u·√L·S, L = N·OH·OW)")
        }
    }

    /// Winograd's weight gradient at a realistic reduction (32 → 32, 16×16, batch 16: L = 4096).
    func testWinogradWeightGradErrorGrowth() throws {
        let device = try testDevice()
        try withWinograd(device, fused: true, weightGrad: true) {
            worstGW = 0
            try check(device, n: 16, c: 32, h: 16, w: 16, k: 32, padH: 1, padW: 1, winogradGW: true, "winograd gw 32 -> 32")
            print("winograd grad weight 32->32 16x16 batch 16: worst error ratio \(worstGW) (u·√L·S)")
        }
    }

    /// The Winograd weight gradient against central differences in Double of L(w) = Σ r ⊙ conv(x, w),
    /// which is linear in w, so the difference quotient is exact but for the rounding of L (computed in
    /// Double by the reference forward): 1e-4 is far below a dropped tap (≈ |r||x| ≈ 0.25).
    func testWinogradWeightGradFiniteDifferences() throws {
        let device = try testDevice()
        try withWinograd(device, fused: true, weightGrad: true) {
            for (xs, cout, pad) in [(Shape([1, 2, 5, 5]), 3, 1), (Shape([2, 1, 4, 5]), 2, 0), (Shape([1, 2, 3, 2]), 2, 2)] {
                let params = Conv2dParams(stride: 1, padding: pad)
                let s = Reference.Conv2dShape(n: xs.n, c: xs.c, h: xs.h, w: xs.w, k: cout, kh: 3, kw: 3, padH: pad, padW: pad)
                let ws: Shape = [cout, xs.c, 3, 3]
                let (x, w) = (random(xs.count, seed: 51), random(ws.count, seed: 52))
                let r = random(xs.n * cout * s.outH * s.outW, seed: 53)
                let gw = device.zeros(ws, label: "gw")
                _ = try device.conv2dBackward(try device.tensor(r, [xs.n, cout, s.outH, s.outW], label: "r"),
                                              x: try device.tensor(x, xs, label: "x"), weight: try device.tensor(w, ws, label: "w"),
                                              params: params, gradWeight: gw, gradBias: nil, needInputGrad: false)
                let (xd, rd) = (x.map(Double.init), r.map(Double.init))
                func loss(_ wv: [Double]) -> Double {
                    zip(Reference.conv2dForward(x: xd, weight: wv, bias: nil, shape: s), rd).reduce(0) { $0 + $1.0 * $1.1 }
                }
                let h = 0.25, wd = w.map(Double.init)
                let central = wd.indices.map { i -> Float in
                    var (plus, minus) = (wd, wd)
                    plus[i] += h
                    minus[i] -= h
                    return Float((loss(plus) - loss(minus)) / (2 * h))
                }
                assertClose(try gw.read(), central, atol: 1e-4, rtol: 1e-4, "x \(xs), w \(ws), pad \(pad): winograd grad weight vs finite differences")
            }
        }
    }

    func testWinogradFusedAgainstReference() throws {
        let device = try testDevice()
        try withWinograd(device, fused: true) {
            let worst = try awkwardShapes(device, "fused")
            print("winograd fused: worst error ratio output \(worst.0), grad input \(worst.1) (u·√L·S)")
        }
    }

    func testWinogradPortableAgainstReference() throws {
        let device = try testDevice()
        try withWinograd(device, fused: false) {
            let worst = try awkwardShapes(device, "portable")
            print("winograd portable: worst error ratio output \(worst.0), grad input \(worst.1) (u·√L·S)")
            // Chunks of images under a small column cap: per image 16·(3 + 4)·(5·4 tiles)·4 B = 8960 B,
            // so a 20000-byte cap gives chunks of 2 over a batch of 5 (offsets and a short tail).
            device.convWorkspace.columnLimitBytes = 20000
            try check(device, n: 5, c: 3, h: 9, w: 7, k: 4, padH: 1, padW: 1, "portable, chunks of 2 images")
        }
    }

    /// A bigger layer (64 → 64, 30×30, batch 2: 2·15·16 lanes in 15 work-items, 8 output blocks):
    /// the error ratio at a realistic length L = 576.
    func testWinogradErrorGrowth() throws {
        let device = try testDevice()
        try withWinograd(device, fused: nil) {
            let worst = try check(device, n: 2, c: 64, h: 30, w: 30, k: 64, padH: 1, padW: 1, "default path 64 -> 64")
            print("winograd 64->64 30x30: worst error ratio output \(worst.0), grad input \(worst.1) (u·√L·S)")
            // The direct (wide) path on the same data, for comparison.
            device.convWorkspace.winograd = false
            let direct = try check(device, n: 2, c: 64, h: 30, w: 30, k: 64, padH: 1, padW: 1, "wide path 64 -> 64")
            print("wide (direct) 64->64 30x30: worst error ratio output \(direct.0), grad input \(direct.1) (u·√L·S)")
        }
    }

    /// The Winograd grad input against central differences of the Winograd forward: L = Σ r ⊙
    /// conv(x, w) is linear in x, so (L(x + h) − L(x − h)) / 2h is exact but for float32 rounding
    /// (the outputs here are ≲ 5, so L carries ≲ 75·5·6e-8 ≈ 2e-5 of rounding, 1e-4 in the quotient
    /// with h = 0.25); 1e-3 absolute (+ 1e-3 relative) is far above that and far below a dropped tap.
    func testWinogradGradInputFiniteDifferences() throws {
        let device = try testDevice()
        for fused in [true, false] {
            try withWinograd(device, fused: fused) {
                for (xs, cout, pad) in [(Shape([1, 2, 5, 5]), 3, 1), (Shape([2, 1, 4, 5]), 2, 0), (Shape([1, 2, 3, 2]), 2, 2)] {
                    let params = Conv2dParams(stride: 1, padding: pad)
                    let ws: Shape = [cout, xs.c, 3, 3]
                    let (x, w) = (random(xs.count, seed: 41), random(ws.count, seed: 42))
                    let wt = try device.tensor(w, ws, label: "w")
                    let out = try device.conv2dForward(try device.tensor(x, xs, label: "x"), weight: wt, bias: nil, params: params)
                    let r = random(out.count, seed: 43)
                    let gx = try device.conv2dBackward(try device.tensor(r, out.shape, label: "r"), x: try device.tensor(x, xs, label: "x"),
                                                       weight: wt, params: params, gradWeight: device.zeros(ws, label: "gw"),
                                                       gradBias: nil, needInputGrad: true)
                    func loss(_ xv: [Float]) throws -> Double {
                        let o = try device.conv2dForward(try device.tensor(xv, xs, label: "x"), weight: wt, bias: nil, params: params).read()
                        return zip(o, r).reduce(0) { $0 + Double($1.0) * Double($1.1) }
                    }
                    let h: Float = 0.25
                    let central = try x.indices.map { i -> Float in
                        var (plus, minus) = (x, x)
                        plus[i] += h
                        minus[i] -= h
                        return Float((try loss(plus) - loss(minus)) / Double(2 * h))
                    }
                    assertClose(try gx!.read(), central, atol: 1e-3, rtol: 1e-3, "fused \(fused): x \(xs), w \(ws), pad \(pad): grad input vs finite differences")
                }
            }
        }
    }

    /// Which convolutions Winograd takes, and the typed error for one it does not.
    func testWinogradApplies() throws {
        func shape(k: Int = 3, stride: Int = 1, pad: Int = 1, dilation: Int = 1) -> Reference.Conv2dShape {
            Reference.Conv2dShape(n: 1, c: 2, h: 8, w: 8, k: 2, kh: k, kw: k, strideH: stride, strideW: stride,
                                  padH: pad, padW: pad, dilationH: dilation, dilationW: dilation)
        }
        XCTAssertTrue(OpenCLBackend.winogradApplies(shape(pad: 0)))
        XCTAssertTrue(OpenCLBackend.winogradApplies(shape(pad: 2)))
        XCTAssertFalse(OpenCLBackend.winogradApplies(shape(pad: 3)))
        XCTAssertFalse(OpenCLBackend.winogradApplies(shape(k: 1)))
        XCTAssertFalse(OpenCLBackend.winogradApplies(shape(stride: 2)))
        XCTAssertFalse(OpenCLBackend.winogradApplies(shape(dilation: 2)))
        let device = try testDevice()
        let buffer = try device.tensor([Float](repeating: 0, count: 256), [256]).deviceBuffer()
        XCTAssertThrowsError(try device.winogradForward(shape(stride: 2), x: buffer, weight: buffer, out: buffer, bias: nil))
    }
}
