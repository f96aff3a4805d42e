import SGEEngine
import SGETensor
import SGEDeviceTestSupport
import XCTest

/// Softmax cross-entropy (Kernels/loss.cl) on the device against the reference: the kernels (a
/// work-item per row below K = 16, float16 rows from there), the CPU-driver kernel (one work-item per
/// group, several rows each, whole vectors with an overlapping last one) and the GPU mapping forced on
/// PoCL with `lossItemsPerRow`, at shapes where many work-groups finish in any order and the last one
/// sums the batch.
final class LossTests: XCTestCase {
    /// Loss: float32 exp and log (a few ulps) and a float32 sum of N terms of size ≤ ~10, against
    /// Double. Gradient, (softmax - onehot)/N: the large-K kernel's softmax is e/s, e within a few ulps,
    /// s a float32 sum of at most ⌈K/16⌉ terms per lane, then 16 lanes and log2(L) tree levels (≤ 75·u ≈
    /// 4.5e-6 relative at K = 1001); the small-K kernel is the reference's arithmetic in float32. So
    /// 1e-5 relative, and 1e-5/N absolute since every gradient carries the factor 1/N.
    let tolerance = 1e-5
    var rng = SeededRNG(seed: 17)
    let reference = ReferenceBackend()

    func random(_ n: Int, _ k: Int) -> (logits: [Float], labels: [Float]) {
        (rng.normals(n * k, std: 3), (0..<n).map { _ in Float(rng.int(k)) })
    }

    /// Both backends on the same logits and labels: loss, correct count (exactly) and gradient.
    func check(_ device: OpenCLBackend, _ logits: [Float], _ labels: [Float], n: Int, k: Int, _ what: String) throws {
        let d = try device.softmaxCrossEntropy(try device.tensor(logits, [n, k], label: "logits"),
                                               labels: try device.tensor(labels, [n], label: "labels"))
        let r = try reference.softmaxCrossEntropy(try reference.tensor(logits, [n, k], label: "logits"),
                                                  labels: try reference.tensor(labels, [n], label: "labels"))
        try assertClose(d.loss, r.loss, atol: tolerance, rtol: tolerance, "\(what) loss")
        try assertClose(d.correct, r.correct, atol: 0, rtol: 0, "\(what) correct")
        try assertClose(d.gradLogits, r.gradLogits, atol: tolerance / Double(n), rtol: tolerance, "\(what) grad")
    }

    /// The default mapping: batch 1, K = 1 and 2, K = 10, K = 15 | 16, 17 around the switch between the
    /// kernels, K = 1000 and 1001 (a float16 tail of 9), K = 37 (2 chunks + tail); N = 300 and 1000
    /// (small K: groups of 256 items, the last partly idle; large K: on 2 compute units 16 groups of
    /// 63 rows, the last of 55), N = 93 and 7. For the CPU-driver kernel's loops (4 vectors at a time in
    /// the max, 2 in the exps, an overlapping last vector): K = 31 (a last vector overlapping 15 lanes),
    /// 32 (2 whole, none), 79 (4 + 0 whole, overlap 1), 4099.
    func testMatchesReferenceOnAwkwardShapes() throws {
        let device = try testDevice()
        for (n, k) in [(1, 1), (5, 1), (1, 2), (7, 10), (1, 10), (300, 10), (1000, 10), (93, 15), (93, 16), (7, 17),
                       (1, 1000), (3, 1000), (256, 1000), (7, 1001), (1000, 37), (1000, 1000), (5, 31), (3, 32), (1, 79),
                       (40, 79), (2, 4099)] {
            let (z, y) = random(n, k)
            try check(device, z, y, n: n, k: k, "N\(n) K\(k)")
        }
    }

    /// The GPU mapping on PoCL: one row per group, L items over its float16 chunks: L = 1, 2 and 4 (more
    /// chunks than items), 64 and 256 (most items without a chunk: K = 33 has 3). N = 1000 rows are
    /// 1000 groups.
    func testGPUMappingMatchesReference() throws {
        let device = try testDevice()
        defer { device.lossItemsPerRow = nil }
        for items in [1, 2, 4, 64, 256] {
            device.lossItemsPerRow = items
            for (n, k) in [(1, 16), (7, 33), (items > 4 ? 93 : 1000, 37), (5, 1000), (3, 1001)] {
                let (z, y) = random(n, k)
                try check(device, z, y, n: n, k: k, "L\(items) N\(n) K\(k)")
            }
        }
    }

    /// Ties: integer logits in 0..<3, so most rows have several maxima (within a chunk, across chunks,
    /// across work-items and in the lanes the CPU kernel's overlapping last vector repeats: K = 31, 79);
    /// half the labels are the first maximum (correct), half the last (correct
    /// only when it is the only one). Extremes: a row of -inf but one class (masked classes: gradient
    /// exactly 0 there), a logit of 1000 (max subtraction), a row of equal logits.
    func testTiesAndExtremesMatchReference() throws {
        let device = try testDevice()
        defer { device.lossItemsPerRow = nil }
        for items in [nil, 4] {
            device.lossItemsPerRow = items
            for k in [10, 31, 40, 79, 1000] {
                let n = 64
                var z = (0..<n * k).map { _ in Float(rng.int(3)) }
                for j in 0..<k {
                    z[j] = j == k / 2 ? 5 : -.infinity
                    z[k + j] = j == k - 1 ? 1000 : 0
                    z[2 * k + j] = 1
                }
                let y: [Float] = (0..<n).map { row in
                    let r = z[row * k..<(row + 1) * k], top = r.max()!
                    return Float((row % 2 == 0 ? r.firstIndex(of: top)! : r.lastIndex(of: top)!) - row * k)
                }
                try check(device, z, y, n: n, k: k, "ties L\(items.map(String.init) ?? "default") K\(k)")
                let g = try device.softmaxCrossEntropy(try device.tensor(z, [n, k]), labels: try device.tensor(y, [n])).gradLogits.read()
                XCTAssertTrue((0..<k).allSatisfy { $0 == k / 2 || g[$0] == 0 }, "K\(k): masked classes get exactly 0")
            }
        }
    }

    /// Labels only on the device cannot be validated without a sync: an invalid one (-1, K, 1.5) makes
    /// the loss NaN, with one and with many work-groups, in both kernels; its row's gradient is the
    /// softmax / N (sums to 1/N). The next call, with valid labels, is right again. Host labels throw.
    func testInvalidDeviceLabelsGiveNaN() throws {
        let device = try testDevice()
        for (n, k) in [(2, 10), (1000, 10), (2, 1000), (300, 1000)] {
            for bad: Float in [-1, Float(k), 1.5] {
                var (z, y) = random(n, k)
                y[n / 2] = bad
                let host = try device.tensor(y, [n], label: "labels")
                let onDevice = try device.output([n], label: "device labels")
                try device.copy(host, to: onDevice)
                XCTAssertEqual(onDevice.residency, .device)
                let logits = try device.tensor(z, [n, k], label: "logits")
                let r = try device.softmaxCrossEntropy(logits, labels: onDevice)
                XCTAssertTrue(try r.loss.read()[0].isNaN, "N\(n) K\(k) label \(bad)")
                let row = try r.gradLogits.read()[(n / 2) * k..<(n / 2 + 1) * k]
                XCTAssertEqual(Double(row.reduce(0, +)), 1 / Double(n), accuracy: tolerance / Double(n), "N\(n) K\(k) label \(bad)")
                XCTAssertThrowsError(try device.softmaxCrossEntropy(logits, labels: host))
                y[n / 2] = 0
                z = random(n, k).logits
                try check(device, z, y, n: n, k: k, "after label \(bad): N\(n) K\(k)")
            }
        }
    }

    /// The batch sums do not depend on which work-group finishes last: repeated calls are bit-identical.
    func testRepeatedCallsAreBitIdentical() throws {
        let device = try testDevice()
        for (n, k) in [(1000, 10), (1000, 1000)] {
            let (z, y) = random(n, k)
            let logits = try device.tensor(z, [n, k]), labels = try device.tensor(y, [n])
            let first = try device.softmaxCrossEntropy(logits, labels: labels)
            let (loss, correct, grad) = (try first.loss.read(), try first.correct.read(), try first.gradLogits.read())
            for _ in 0..<4 {
                let again = try device.softmaxCrossEntropy(logits, labels: labels)
                XCTAssertEqual(try again.loss.read().map(\.bitPattern), loss.map(\.bitPattern), "N\(n) K\(k)")
                XCTAssertEqual(try again.correct.read(), correct)
                XCTAssertEqual(try again.gradLogits.read(), grad)
            }
        }
    }
}
