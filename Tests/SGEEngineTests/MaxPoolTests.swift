import SGEEngine
import SGETensor
import SGEDeviceTestSupport
import XCTest

/// Max pooling, both kernel variants forced on PoCL with `poolVariant` (.gpu: Kernels/pool.cl, one
/// work-item per element; .cpu: Kernels/pool_cpu.cl, one work-item per plane, 16-output vectors in a
/// row's interior), against the reference and against each other.
///
/// Tolerance 0 throughout: the forward pass only compares and copies floats (no rounding), so value
/// and argmax must equal the reference's exactly. The backward pass adds at most ⌈K/S⌉² gradients per
/// input; with gradients that are multiples of 1/4 below 8 every float sum is exact, so it equals the
/// Double reference exactly too. With arbitrary gradients the two variants must still agree bit for
/// bit (both add in output row-major order from +0).
final class MaxPoolTests: XCTestCase {
    var rng = SeededRNG(seed: 17)
    let reference = ReferenceBackend()

    /// (kernel, stride, padding): padding 0 and 1, stride 1 (overlapping windows), kernel 1 and 2,
    /// stride above the kernel (input rows no window covers), stride 3 (the generic strided load).
    let geometries = [(1, 1, 0), (2, 1, 0), (2, 1, 1), (2, 2, 0), (2, 2, 1), (3, 1, 0), (3, 1, 1), (3, 2, 0), (3, 2, 1),
                      (3, 3, 1), (2, 3, 0), (5, 2, 2)]
    /// Batch 1, H·W = 1, odd sizes; rows wide enough for one or more 16-output vectors plus scalar
    /// edges at stride 1, 2 and 3 (W = 37, 71, 53), a single row (H = 1) and a single column.
    let shapes: [Shape] = [[1, 3, 7, 13], [2, 17, 6, 5], [1, 2, 1, 1], [1, 2, 9, 71], [3, 1, 20, 37], [1, 1, 1, 53], [2, 3, 11, 1]]

    func geometriesFitting(_ shape: Shape) -> [(Int, Int, Int)] {
        geometries.filter { (k, _, p) in shape.h + 2 * p >= k && shape.w + 2 * p >= k }
    }

    func bits(_ t: Tensor) throws -> [UInt32] { try t.read().map(\.bitPattern) }

    func testBothVariantsMatchReferenceExactly() throws {
        let device = try testDevice()
        defer { device.poolVariant = nil }
        for shape in shapes {
            let v = rng.normals(shape.count)
            for (k, s, p) in geometriesFitting(shape) {
                try assertVariantsMatchReference(device, v, shape, k, s, p) { count in
                    (0..<count).map { _ in Float(self.rng.int(64) - 32) / 4 }
                }
            }
        }
    }

    /// Both variants on `x` against the reference, forward (value bits and argmax) and backward with
    /// the gradients `grads(outputCount)` makes (exact sums), all with tolerance 0.
    func assertVariantsMatchReference(_ device: OpenCLBackend, _ x: [Float], _ shape: Shape, _ k: Int, _ s: Int, _ p: Int,
                                      grads: (Int) -> [Float], file: StaticString = #filePath, line: UInt = #line) throws {
        let mr = try reference.maxPoolForward(try reference.tensor(x, shape), kernel: k, stride: s, padding: p)
        let g = grads(mr.out.count)
        let gr = try reference.maxPoolBackward(try reference.tensor(g, mr.out.shape), argmax: mr.argmax, inputShape: shape,
                                               kernel: k, stride: s, padding: p)
        for variant in PoolVariant.allCases {
            device.poolVariant = variant
            let what = "\(variant) \(shape) k\(k) s\(s) p\(p)"
            let md = try device.maxPoolForward(try device.tensor(x, shape), kernel: k, stride: s, padding: p)
            XCTAssertEqual(try bits(md.out), try bits(mr.out), "\(what) max", file: file, line: line)
            try assertClose(md.argmax, mr.argmax, atol: 0, rtol: 0, "\(what) argmax", file: file, line: line)
            let gd = try device.maxPoolBackward(try device.tensor(g, mr.out.shape), argmax: md.argmax, inputShape: shape,
                                                kernel: k, stride: s, padding: p)
            try assertClose(gd, gr, atol: 0, rtol: 0, "\(what) grad", file: file, line: line)
        }
    }

    /// Random gradients: sums round, but both variants add in the same order, so they agree bit for bit.
    func testVariantsAgreeBitForBit() throws {
        let device = try testDevice()
        defer { device.poolVariant = nil }
        for shape: Shape in [[2, 5, 31, 45], [1, 3, 8, 70]] {
            let x = try device.tensor(rng.normals(shape.count), shape)
            for (k, s, p) in geometriesFitting(shape) {
                let what = "\(shape) k\(k) s\(s) p\(p)"
                var results: [[[UInt32]]] = []
                var gradRNG = SeededRNG(seed: 5)
                let grads = gradRNG.normals(try device.maxPoolForward(x, kernel: k, stride: s, padding: p).out.count)
                for variant in PoolVariant.allCases {
                    device.poolVariant = variant
                    let m = try device.maxPoolForward(x, kernel: k, stride: s, padding: p)
                    let g = try device.tensor(grads, m.out.shape)
                    let gx = try device.maxPoolBackward(g, argmax: m.argmax, inputShape: shape, kernel: k, stride: s, padding: p)
                    results.append([try bits(m.out), try bits(m.argmax), try bits(gx)])
                }
                XCTAssertEqual(results[0][0], results[1][0], "\(what) out")
                XCTAssertEqual(results[0][1], results[1][1], "\(what) argmax")
                XCTAssertEqual(results[0][2], results[1][2], "\(what) grad")
            }
        }
    }

    /// Small integers and -inf make many ties and all--inf windows: the first maximum wins (an
    /// all--inf window points at its first element), and overlapping windows sharing an argmax add up.
    func testTiesAndInfinitiesMatchReference() throws {
        let device = try testDevice()
        defer { device.poolVariant = nil }
        let shape: Shape = [2, 3, 7, 45]
        let v = (0..<shape.count).map { _ in rng.int(8) == 0 ? -Float.infinity : Float(rng.int(3)) }
        for (k, s, p) in [(3, 1, 1), (2, 2, 0), (3, 2, 1), (2, 1, 0)] {
            try assertVariantsMatchReference(device, v, shape, k, s, p) { count in (0..<count).map { _ in Float(self.rng.int(16)) / 2 } }
        }
    }

    /// NaN wins a window (PyTorch propagates it); of several NaNs the last in row-major order is kept,
    /// as in the reference. NaNs sit at edges and inside 16-output vectors.
    func testNaNPropagatesInBothVariants() throws {
        let device = try testDevice()
        defer { device.poolVariant = nil }
        var small = (0..<9).map { Float($0) }
        small[4] = .nan
        let shape: Shape = [1, 2, 9, 40]
        var v = rng.normals(shape.count)
        for i in [0, 5, 6, 39, 41, 80, 81, 100, 200, 359, 400, 555, 719] { v[i] = .nan }
        for variant in PoolVariant.allCases {
            device.poolVariant = variant
            let md = try device.maxPoolForward(try device.tensor(small, [1, 1, 3, 3]), kernel: 3, stride: 1, padding: 1)
            XCTAssertTrue(try md.out.read().allSatisfy(\.isNaN), "\(variant): the centre NaN is in every window")
            XCTAssertEqual(try md.argmax.read(), [Float](repeating: 4, count: 9), "\(variant)")
            for (k, s, p) in [(3, 1, 1), (3, 2, 1), (2, 2, 0)] {
                let what = "\(variant) k\(k) s\(s) p\(p)"
                let m = try device.maxPoolForward(try device.tensor(v, shape), kernel: k, stride: s, padding: p)
                let r = try reference.maxPoolForward(try reference.tensor(v, shape), kernel: k, stride: s, padding: p)
                let (out, ref) = (try m.out.read(), try r.out.read())
                XCTAssertEqual(out.map(\.isNaN), ref.map(\.isNaN), "\(what): NaN positions")
                XCTAssertEqual(zip(out, ref).filter { !$0.0.isNaN && $0.0 != $0.1 }.count, 0, "\(what): values")
                XCTAssertEqual(try m.argmax.read(), try r.argmax.read(), "\(what): argmax")
            }
        }
    }
}
