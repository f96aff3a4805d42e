import Foundation
@testable import SGENet
import XCTest

/// metrics.jsonl lines: the keys `sge plot`, `sge study` and earlier runs' readers expect, and a
/// diverged loss written as null rather than making the line unwritable.
final class MetricsLineTests: XCTestCase {
    func keys(_ line: MetricsLine) throws -> [String: Any] {
        let data = try JSONEncoder().encode(line)
        return try JSONSerialization.jsonObject(with: data) as! [String: Any]
    }

    func testStepAndEpochLinesKeepTheirKeys() throws {
        let step = try keys(MetricsLine(epoch: 1, step: 7, trainLoss: 2.5, trainAccuracy: 0.25, lr: 0.1, imagesPerSecond: 300))
        XCTAssertEqual(Set(step.keys), ["kind", "epoch", "step", "train_loss", "train_acc", "lr", "images_per_s"])
        XCTAssertEqual(step["kind"] as? String, "step")

        var m = EpochMetrics(epoch: 2, step: 40, trainLoss: .nan, trainAccuracy: 0.5, testLoss: 1.25, testAccuracy: 0.75, lr: 0.05,
                             imagesPerSecond: 250, seconds: 10, dataWaitSeconds: 0.5, hostSeconds: 2, deviceWaitSeconds: 7)
        let epoch = try keys(MetricsLine(m, ranks: nil))
        XCTAssertEqual(Set(epoch.keys), ["kind", "epoch", "step", "train_loss", "train_acc", "lr", "images_per_s", "seconds",
                                         "data_wait_s", "host_s", "device_wait_s", "test_loss", "test_acc"])
        XCTAssertTrue(epoch["train_loss"] is NSNull, "a NaN loss is written as null: \(epoch)")
        XCTAssertEqual(epoch["test_acc"] as? Double, 0.75)

        m.testLoss = nil
        m.allReduceBytesPerStep = 1024
        let parallel = try keys(MetricsLine(m, ranks: 2))
        XCTAssertNil(parallel["test_loss"], "no evaluation: no test keys")
        XCTAssertEqual(parallel["ranks"] as? Int, 2)
        XCTAssertEqual(parallel["allreduce_bytes_per_step"] as? Int, 1024)
        XCTAssertNotNil(parallel["allreduce_wait_s"])
    }
}
