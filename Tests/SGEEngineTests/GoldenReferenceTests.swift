import Foundation
import SGEEngine
import SGETensor
import SGEDeviceTestSupport
import XCTest

/// The reference backend against PyTorch's golden tensors (Tests/Fixtures/golden, the `sge
/// check-golden` rule). Here rather than in SGEReferenceTests: the golden-file check (SGEGolden)
/// and ReferenceBackend live in SGEEngine, which the reference tests do not depend on.
final class GoldenReferenceTests: XCTestCase {
    func testGoldenFiles() throws {
        let dir = fixturesDirectory().appendingPathComponent("golden")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".safetensors") }.sorted()
        XCTAssertEqual(files.count, 6, "golden fixtures missing from \(dir.path)")
        let backend = ReferenceBackend()
        for f in files {
            let c = try SGEGolden.Case.load(path: dir.appendingPathComponent(f).path)
            for r in try SGEGolden.check(c, on: backend) {
                XCTAssertTrue(r.passed, "\(f) \(r.name): max abs \(r.maxAbs) > tolerance \(r.tolerance)")
            }
        }
    }
}
