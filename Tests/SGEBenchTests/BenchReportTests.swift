import Foundation
import SGEBench
import SGETensor
import XCTest

/// The `sge bench --json` document and `--compare`: schema, round trip, row matching and speed-ups.
final class BenchReportTests: XCTestCase {
    func row(_ op: String, _ dir: String, _ shape: String, ms: Double) -> BenchRow {
        BenchRow(op: op, direction: dir, shape: shape, ms: ms, msMin: ms * 0.9, msMax: ms * 1.2, gbps: 12 / ms, fraction: 0.5,
                 unit: "GB/s", timer: "event")
    }

    func testRoundTripAndSchema() throws {
        var train = BenchRow(op: "train_step", direction: "step", shape: "small b128", ms: 250, msMin: 240, msMax: 260,
                             imagesPerSecond: 512, unit: "images/s", timer: "wall")
        train.fraction = nil
        let report = BenchReport(device: "dev A", platform: "PoCL", driver: "3.1", sgeVersion: "0.1.0", timestamp: "2026-01-02T03:04:05Z",
                                 rows: [row("relu", "forward", "8x256x56x56", ms: 3), train])
        let data = try report.json()
        XCTAssertEqual(try BenchReport.decode(data, source: "mem"), report)
        // The documented snake_case keys, so other tools can read the file.
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        XCTAssertEqual(Set(object.keys), ["device", "platform", "driver", "sge_version", "timestamp", "rows"])
        let rows = try XCTUnwrap(object["rows"] as? [[String: Any]])
        XCTAssertEqual(Set(rows[0].keys), ["op", "direction", "shape", "ms", "ms_min", "ms_max", "gbps", "fraction", "unit", "timer"])
        XCTAssertEqual(rows[1]["images_per_s"] as? Double, 512)
        XCTAssertEqual(report.rows[1].rate, 512)
        XCTAssertThrowsError(try BenchReport.decode(Data("{\"rows\": 3}".utf8), source: "bad.json")) { error in
            guard case SGEError.corruptFile(let path, _)? = error as? SGEError else { return XCTFail("\(error)") }
            XCTAssertEqual(path, "bad.json")
        }
    }

    func testComparisonMatchesRowsAndComputesSpeedups() {
        let a = BenchReport(device: "slow", platform: "p", driver: "d", sgeVersion: "0.1.0",
                            rows: [row("sge", "forward", "8x256x56x56 G64", ms: 10), row("sge", "backward", "8x256x56x56 G64", ms: 30),
                                   row("conv", "forward", "x", ms: 8), row("only_a", "forward", "s", ms: 1)])
        // B lists rows in another order, has one row A lacks, and shares op/direction with a different shape.
        let b = BenchReport(device: "fast", platform: "p", driver: "d", sgeVersion: "0.1.0",
                            rows: [row("sge", "backward", "8x256x56x56 G64", ms: 10), row("sge", "forward", "8x256x56x56 G64", ms: 20),
                                   row("conv", "forward", "y", ms: 2), row("only_b", "step", "s", ms: 5)])
        let c = BenchComparison(a, b)
        XCTAssertEqual(c.deviceA, "slow")
        XCTAssertEqual(c.deviceB, "fast")
        XCTAssertEqual(c.pairs.map(\.key), ["sge|forward|8x256x56x56 G64", "sge|backward|8x256x56x56 G64", "conv|forward|x",
                                            "only_a|forward|s", "conv|forward|y", "only_b|step|s"])
        XCTAssertEqual(c.pairs[0].speedup!, 0.5, accuracy: 1e-12)  // B slower: 10 ms → 20 ms
        XCTAssertEqual(c.pairs[1].speedup!, 3, accuracy: 1e-12)    // B faster: 30 ms → 10 ms
        XCTAssertNil(c.pairs[2].speedup)
        XCTAssertNil(c.pairs[3].b)
        XCTAssertNil(c.pairs[5].a)
        XCTAssertEqual(c.geometricMeanSpeedup!, (0.5 * 3).squareRoot(), accuracy: 1e-12)
        let table = c.table()
        XCTAssertTrue(table.contains("A: slow") && table.contains("B: fast"))
        XCTAssertTrue(table.contains("3.00×") && table.contains("0.50×"), table)
    }

    /// `sge bench data --json` keeps the keys it has always printed.
    func testDataBenchReportKeys() throws {
        let report = DataBenchReport(data: "photos", imageSize: 224, transform: "train", cores: 2,
                                     runs: [.init(threads: 2, images: 100, seconds: 4, skipped: 1)])
        let object = try JSONSerialization.jsonObject(with: Data(try jsonText(report, pretty: false).utf8)) as! [String: Any]
        XCTAssertEqual(Set(object.keys), ["data", "image_size", "transform", "cores", "runs"])
        let run = (object["runs"] as! [[String: Any]])[0]
        XCTAssertEqual(Set(run.keys), ["threads", "images", "seconds", "images_per_s", "images_per_s_per_thread", "skipped"])
        XCTAssertEqual(run["images_per_s"] as? Double, 25)
        XCTAssertEqual(run["images_per_s_per_thread"] as? Double, 12.5)
    }
}
