import Foundation
import SGENet
import SGEOpenCL
@testable import SGETuning
import SGEDeviceTestSupport
import XCTest

/// The tuning search: validation of every timed result, a whole (tiny) run, and the GEMM shapes
/// derived from a model configuration.
final class TunerTests: XCTestCase {
    private let sampleXgemm = ["GEMMK": 0, "KREG": 1, "MWG": 64, "NWG": 64, "KWG": 32, "MDIMC": 8, "NDIMC": 8, "MDIMA": 8, "NDIMB": 8,
                               "VWM": 4, "VWN": 8, "KWI": 2, "SA": 0, "SB": 0, "STRM": 0, "STRN": 0]
    private let sampleDirect = ["WGD": 32, "MDIMCD": 8, "NDIMCD": 8, "MDIMAD": 8, "NDIMBD": 8, "VWMD": 4, "VWND": 4, "KWID": 2,
                                "PADA": 1, "PADB": 1]

    /// The shapes derived from the default small model equal the list sge tuned before they were
    /// derived (hard-coded then): the same GEMMs with the same occurrence counts.
    func testShapesOfTheSmallModel() {
        let images = 16
        // (cin, cout, kernel, stride, input size, occurrences per step), the former list.
        let former: [(Int, Int, Int, Int, Int, Int)] = [(1, 16, 3, 1, 28, 1), (16, 16, 3, 1, 28, 2), (16, 32, 3, 2, 28, 1), (32, 32, 3, 1, 14, 1),
                                                        (16, 32, 1, 2, 28, 1), (32, 64, 3, 2, 14, 1), (64, 64, 3, 1, 7, 1), (32, 64, 1, 2, 14, 1)]
        var expected: [String: Int] = [:]
        for (i, (cin, cout, k, s, size, count)) in former.enumerated() {
            let out = (size + 2 * (k / 2) - k) / s + 1
            let p = out * out, ckk = cin * k * k
            expected["NN \(cout)x\(p)x\(ckk) b\(images) c1", default: 0] += count
            expected["NT \(cout)x\(ckk)x\(p) b1 c\(images)", default: 0] += count
            if i > 0 { expected["TN \(ckk)x\(p)x\(cout) b\(images) c1", default: 0] += count }
        }
        var derived: [String: Int] = [:]
        for g in GemmShape.training(.small(), height: 28, width: 28, images: images) {
            derived["\(g.transA ? "T" : "N")\(g.transB ? "T" : "N") \(g.m)x\(g.n)x\(g.k) b\(g.batch) c\(g.calls)", default: 0] += g.count
        }
        XCTAssertEqual(derived, expected)
        // The model's per-image GEMMs all sit below 256³, so threshold 256 runs them direct.
        XCTAssertTrue(GemmShape.training(.small(), height: 28, width: 28, images: 1).allSatisfy { $0.mnk < 256 * 256 * 256 })
        XCTAssertGreaterThanOrEqual(GemmShape.square512.mnk, 256 * 256 * 256)
        // A bottleneck preset has its 1×1 convolutions and downsamples.
        let r50 = GemmShape.training(try! ResNetConfig.preset("resnet50", channels: 3, height: 224, classes: 1000), height: 224, width: 224, images: 1)
        XCTAssertTrue(r50.contains { $0.name == "layer1.0.conv1 fwd" && $0.m == 64 && $0.k == 64 && $0.n == 56 * 56 })
        XCTAssertTrue(r50.contains { $0.name == "layer4.0.downsample fwd" && $0.m == 2048 && $0.k == 1024 && $0.n == 7 * 7 })
    }

    func testWrongResultsAreRejected() throws {
        let context = try testDevice().device
        // Awkward tiny shapes in every form the convolutions use, with CLBlast's current parameters.
        let shapes = [GemmShape("fwd", m: 7, n: 93, k: 5, batch: 3), GemmShape("gradW", transB: true, m: 3, n: 5, k: 17, calls: 2, beta: 1),
                      GemmShape("gradX", transA: true, m: 9, n: 11, k: 4, batch: 2)]
        let tuner = try GemmTuner(context: context, shapes: shapes)
        tuner.repeats = 1
        for i in shapes.indices {
            let good = try tuner.run(i)
            XCTAssertTrue(tuner.isCorrect(i, result: good), "CLBlast's result for \(shapes[i]) must pass")
            XCTAssertNotNil(tuner.time(i))
            var wrong = good
            wrong[wrong.count - 1] += 0.05  // last element of the last image: a stride or edge bug
            XCTAssertFalse(tuner.isCorrect(i, result: wrong), "a perturbed result for \(shapes[i]) must fail")
            wrong = good
            wrong[0] = .nan
            XCTAssertFalse(tuner.isCorrect(i, result: wrong))
            XCTAssertFalse(tuner.isCorrect(i, result: Array(good.dropLast())))
        }
    }

    /// A full tuning run on tiny shapes with one candidate; overrides CLBlast for the process.
    func testTuneStoresAValidatedWinner() throws {
        guard ProcessInfo.processInfo.environment["SGE_TUNE_TEST"] == "1" else {
            throw XCTSkip("overrides CLBlast's parameters for the whole test process; set SGE_TUNE_TEST=1")
        }
        let context = try testDevice().device
        let tuner = try GemmTuner(context: context, shapes: [GemmShape("small", m: 16, n: 49, k: 36, batch: 2), GemmShape("big", m: 96, n: 80, k: 72)])
        tuner.repeats = 1
        let candidate = GemmCandidates.Triple(xgemm: sampleXgemm, direct: sampleDirect, threshold: 40)
        let outcome = try tuner.tune(budget: 0, candidates: [candidate])
        XCTAssertEqual(outcome.tried, 1)
        XCTAssertEqual(outcome.rejected, 0)
        XCTAssertEqual(outcome.after.count, 2)
        if let tuning = outcome.tuning {
            XCTAssertEqual(tuning.xgemm, sampleXgemm)
            XCTAssertEqual(tuning.xgemmDirect, sampleDirect)
        }
    }
}
