import Foundation
import SGEEngine
import SGETensor
import SGEDeviceTestSupport
import XCTest

/// Finding 2: golden files holding NaN or Inf, or a non-finite tolerance, must not pass.
final class GoldenNonFiniteTests: XCTestCase {
    var dir: String!

    override func setUpWithError() throws {
        dir = (NSTemporaryDirectory() as NSString).appendingPathComponent("sge-golden-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    /// small_3x3 with `edit` applied, written to a temporary file; returns its path.
    func damaged(_ edit: (inout SafeTensors) -> Void) throws -> String {
        var file = try SafeTensors.read(path: fixturesDirectory().appendingPathComponent("golden/small_3x3.safetensors").path)
        edit(&file)
        let path = (dir as NSString).appendingPathComponent("damaged.safetensors")
        try file.write(path: path)
        return path
    }

    func testIntactGoldenPasses() throws {
        let c = try SGEGolden.Case.load(path: try damaged { _ in })
        XCTAssertTrue(try SGEGolden.check(c, on: ReferenceBackend()).allSatisfy(\.passed))
    }

    func testNaNInGoldenFails() throws {
        let c = try SGEGolden.Case.load(path: try damaged { $0.tensors["out"]!.data[17] = .nan })
        let out = try SGEGolden.check(c, on: ReferenceBackend()).first { $0.name == "out" }!
        XCTAssertFalse(out.passed, "a NaN in the golden out[17] must fail, got max abs \(out.maxAbs) <= \(out.tolerance)")
        XCTAssertTrue(out.problem.contains("out[17]") && out.problem.contains("golden value is nan"), out.problem)
    }

    func testInfinityInGoldenFailsAndDoesNotWidenTheTolerance() throws {
        let c = try SGEGolden.Case.load(path: try damaged { $0.tensors["grad_x"]!.data[3] = .infinity })
        let gx = try SGEGolden.check(c, on: ReferenceBackend()).first { $0.name == "grad_x" }!
        XCTAssertFalse(gx.passed)
        XCTAssertTrue(gx.tolerance.isFinite, "tolerance \(gx.tolerance)")
    }

    func testNonFiniteOrNegativeToleranceMakesTheFileInvalid() throws {
        for value in ["inf", "nan", "-1e-6", "-inf"] {
            let path = try damaged { $0.metadata["f32_err_out"] = value }
            XCTAssertThrowsError(try SGEGolden.Case.load(path: path), "f32_err_out = \(value)") { error in
                guard case SGEError.corruptFile(_, let reason) = error else { return XCTFail("\(error)") }
                XCTAssertTrue(reason.contains("f32_err_out"), reason)
            }
        }
    }

    /// `sge validate` goes through the same rule: NaN on both sides at the same place is not a
    /// match (no op expects NaN), where the old comparison counted it as a difference of 0.
    func testValidationFailsWhenBothSidesHoldNaN() throws {
        let device = try testDevice()
        let validator = Validator(device: BrokenBackend(device, breaking: "relu forward nan"),
                                  reference: BrokenBackend(device, breaking: "relu forward nan"))
        let report = try validator.run(ops: ["relu"], cases: 1, seed: 1)
        let forward = report.rows.first { $0.direction == "forward" }!
        XCTAssertFalse(forward.passed, "NaN on both sides must fail validation")
        XCTAssertTrue(forward.failureDetail?.contains("non-finite") ?? false, forward.failureDetail ?? "")
    }
}
