import Foundation
import SGENet
import SGETensor
@testable import SGEViz
import XCTest

/// `sge plot`: metrics.jsonl to a PNG loss/accuracy chart.
final class PlotTests: XCTestCase {
    var dir: String!

    override func setUpWithError() throws {
        dir = (NSTemporaryDirectory() as NSString).appendingPathComponent("sge-plot-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    func path(_ name: String) -> String { (dir as NSString).appendingPathComponent(name) }

    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let p = path(name)
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        return p
    }

    /// Asserts `body` throws `SGEError.corruptFile` for `file` with a reason containing `needle`.
    func assertCorrupt<T>(_ file: String, _ needle: String, _ body: () throws -> T, line: UInt = #line) {
        XCTAssertThrowsError(try body(), line: line) { error in
            guard case SGEError.corruptFile(let p, let reason) = error else {
                return XCTFail("expected corruptFile, got \(error)", line: line)
            }
            XCTAssertEqual(p, file, line: line)
            XCTAssertTrue(reason.contains(needle), "reason '\(reason)' lacks '\(needle)'", line: line)
        }
    }

    func testPlotFromJSONL() throws {
        var lines = [String]()
        for e in 1...4 {
            for s in stride(from: 10, through: 50, by: 10) {
                lines.append(#"{"kind":"step","step":\#((e - 1) * 50 + s),"epoch":\#(e),"train_loss":\#(2.0 / Double(e) + 0.01 * Double(s)),"lr":0.1}"#)
            }
            lines.append(#"{"kind":"epoch","epoch":\#(e),"step":\#(e * 50),"train_loss":\#(2.0 / Double(e)),"train_acc":\#(0.5 + 0.1 * Double(e)),"test_loss":\#(2.1 / Double(e)),"test_acc":\#(0.45 + 0.1 * Double(e)),"images_per_s":321.5}"#)
        }
        lines.insert("", at: 3)  // blank lines are skipped
        let jsonl = try write("run.jsonl", Array(lines.joined(separator: "\n").utf8))
        let records = try MetricsPlot.load(path: jsonl)
        XCTAssertEqual(records.count, 24)
        // Step 25 of a 50-step epoch sits at epoch 0.5 on the x axis.
        let series = MetricsPlot.series(records)
        XCTAssertEqual(series.xName, "epoch")
        XCTAssertEqual(series.loss.map(\.name), ["train loss (step)", "train loss", "test loss"])
        XCTAssertEqual(series.loss[0].points[0].0, 0.2, accuracy: 1e-12)
        XCTAssertEqual(series.accuracy.map(\.name), ["train acc", "test acc"])

        let png = path("run.png")
        XCTAssertEqual(try MetricsPlot.plot(jsonl: jsonl, png: png, width: 640, height: 300), 24)
        let image = try PNG.read(path: png)
        XCTAssertEqual([image.width, image.height, image.channels], [640, 300, 3])
        // Both series colours (blue train, orange test) were drawn.
        var colours = Set<[UInt8]>()
        for i in stride(from: 0, to: image.pixels.count, by: 3) { colours.insert(Array(image.pixels[i..<(i + 3)])) }
        XCTAssertTrue(colours.contains([31, 119, 180]))
        XCTAssertTrue(colours.contains([255, 127, 14]))

        // Without epochs the x axis is the step.
        XCTAssertEqual(MetricsPlot.series(try MetricsPlot.parse(#"{"step":1,"train_loss":2}"#, path: "x")).xName, "step")
        // A broken line is named.
        let broken = try write("broken.jsonl", Array("{\"epoch\":1}\n{\"epoch\":2,\n".utf8))
        assertCorrupt(broken, "line 2") { try MetricsPlot.load(path: broken) }
        let empty = try write("empty.jsonl", Array("\n".utf8))
        assertCorrupt(empty, "no metrics") { try MetricsPlot.plot(jsonl: empty, png: png) }
    }
}
