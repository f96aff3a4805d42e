// Training-curve plots from a metrics JSONL file (one JSON object per line).
//
// Keys (any may be missing): "kind" ("step" or "epoch"), "epoch", "step", "train_loss", "train_acc",
// "test_loss", "test_acc", "lr", "images_per_s". A line without "kind" counts as an epoch record
// if it has test metrics or no "step", else as a step record.
//
// The x axis is the epoch when any record has one. A step record is placed at step / S, where S
// (steps per epoch) = step / epoch of the last epoch record that has both; without S it is placed
// at its own "epoch" value. With no epochs anywhere the x axis is the step.
//
// Two panels: loss (train per step, thin and light; train and test per epoch, with markers) and
// accuracy (the same series for train_acc/test_acc). Drawn on a `Canvas`, written with libpng.
import Foundation
import SGENet
import SGETensor

/// One line of a metrics JSONL file: its kind and its numeric values.
public struct MetricsRecord: Sendable, Equatable {
    public var kind: String
    public var values: [String: Double]
    public init(kind: String, values: [String: Double]) { self.kind = kind; self.values = values }
    public subscript(key: String) -> Double? { values[key] }
}

/// Reads metrics JSONL files and plots them.
public enum MetricsPlot {
    /// Parses JSONL text; blank lines are skipped, a line that is not a JSON object is an error
    /// naming `path` and the line number. Non-numeric values other than "kind" are ignored.
    public static func parse(_ text: String, path: String) throws -> [MetricsRecord] {
        var records = [MetricsRecord]()
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty { continue }
            guard let object = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [String: Any] else {
                throw SGEError.corruptFile(path: path, reason: "line \(n + 1) is not a JSON object: \(trimmed.prefix(60))")
            }
            var values = [String: Double]()
            var kind: String?
            for (key, value) in object {
                if key == "kind" { kind = value as? String; continue }
                if let number = value as? NSNumber, !(value is Bool) { values[key] = number.doubleValue }
                else if let number = value as? Double { values[key] = number }
                else if let number = value as? Int { values[key] = Double(number) }
            }
            let inferred = values["test_loss"] != nil || values["test_acc"] != nil || values["step"] == nil ? "epoch" : "step"
            records.append(MetricsRecord(kind: kind ?? inferred, values: values))
        }
        return records
    }

    /// Reads and parses a JSONL file.
    public static func load(path: String) throws -> [MetricsRecord] {
        guard FileManager.default.fileExists(atPath: path) else { throw SGEError.io(path: path, reason: "no such file") }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw SGEError.io(path: path, reason: "cannot read as UTF-8 text")
        }
        return try parse(text, path: path)
    }

    /// Reads `jsonl`, renders it and writes the PNG to `png`; returns the number of records.
    @discardableResult
    public static func plot(jsonl: String, png: String, width: Int = 1400, height: Int = 600) throws -> Int {
        try ImageLimits.check(width: width, height: height, what: "plot: --width \(width) --height \(height)")
        let records = try load(path: jsonl)
        guard records.contains(where: { !$0.values.isEmpty }) else {
            throw SGEError.corruptFile(path: jsonl, reason: "no metrics records (expected JSON objects with train_loss, test_acc, ...)")
        }
        let title = (jsonl as NSString).lastPathComponent
        try render(records, width: width, height: height, title: title).writePNG(path: png)
        return records.count
    }

    /// A named series of (x, y) points.
    public struct Series: Sendable {
        public var name: String
        public var points: [(Double, Double)]
        public var color: RGB
        public var thickness: Int
        public var markers: Bool
    }

    /// The series of both panels and the x-axis name.
    public static func series(_ records: [MetricsRecord]) -> (loss: [Series], accuracy: [Series], xName: String) {
        let epochs = records.filter { $0.kind != "step" }
        let steps = records.filter { $0.kind == "step" }
        let anyEpoch = records.contains { $0["epoch"] != nil }
        let stepsPerEpoch = epochs.last(where: { ($0["epoch"] ?? 0) > 0 && $0["step"] != nil }).map { $0["step"]! / $0["epoch"]! }
        func x(_ r: MetricsRecord, _ i: Int) -> Double? {
            if !anyEpoch { return r["step"] ?? Double(i) }
            if r.kind == "step", let s = r["step"], let spe = stepsPerEpoch, spe > 0 { return s / spe }
            return r["epoch"]
        }
        func collect(_ rs: [MetricsRecord], _ key: String) -> [(Double, Double)] {
            rs.enumerated().compactMap { i, r in
                guard let xv = x(r, i), let yv = r[key], xv.isFinite, yv.isFinite else { return nil }
                return (xv, yv)
            }
        }
        let blue = RGB(31, 119, 180), orange = RGB(255, 127, 14), lightBlue = RGB(174, 199, 232)
        func panel(_ key: String, _ label: String) -> [Series] {
            [Series(name: "train \(label) (step)", points: collect(steps, "train_\(key)"), color: lightBlue, thickness: 1, markers: false),
             Series(name: "train \(label)", points: collect(epochs, "train_\(key)"), color: blue, thickness: 2, markers: true),
             Series(name: "test \(label)", points: collect(epochs, "test_\(key)"), color: orange, thickness: 2, markers: true)]
                .filter { !$0.points.isEmpty }
        }
        return (panel("loss", "loss"), panel("acc", "acc"), anyEpoch ? "epoch" : "step")
    }

    /// Draws the two panels (loss, accuracy) side by side.
    public static func render(_ records: [MetricsRecord], width: Int = 1400, height: Int = 600, title: String = "") throws -> Canvas {
        guard width >= 200, height >= 120 else {
            throw SGEError.invalidArgument("plot: image size \(width)x\(height) is too small (at least 200x120)")
        }
        try ImageLimits.check(width: width, height: height, what: "plot: --width \(width) --height \(height)")
        var canvas = Canvas(width: width, height: height)
        let s = max(1, height / 300)
        let (loss, accuracy, xName) = series(records)
        let top = title.isEmpty ? 0 : Canvas.textHeight(scale: s) + 8 * s
        if !title.isEmpty {
            var full = title
            if let last = records.last(where: { $0["test_acc"] != nil }), let acc = last["test_acc"] {
                full += "   last test acc " + format(acc, decimals: acc <= 1 ? 4 : 2)
            }
            if let ips = records.last(where: { $0["images_per_s"] != nil })?["images_per_s"] {
                full += "   " + format(ips, decimals: 0) + " img/s"
            }
            canvas.text(full, x: (width - Canvas.textWidth(full, scale: s)) / 2, y: 4 * s, .black, scale: s)
        }
        let half = width / 2
        drawPanel(&canvas, x: 0, y: top, width: half, height: height - top, title: "loss", xName: xName, series: loss, scale: s)
        drawPanel(&canvas, x: half, y: top, width: width - half, height: height - top, title: "accuracy", xName: xName, series: accuracy, scale: s)
        return canvas
    }

    static func drawPanel(_ c: inout Canvas, x: Int, y: Int, width: Int, height: Int, title: String, xName: String,
                          series: [Series], scale s: Int) {
        let th = Canvas.textHeight(scale: s)
        let left = x + 12 * s + th + 7 * 6 * s, right = x + width - 12 * s
        let plotTop = y + th + 10 * s, bottom = y + height - 2 * th - 14 * s
        let grey = RGB(225, 225, 225)
        c.text(title, x: (left + right - Canvas.textWidth(title, scale: s)) / 2, y: y + 3 * s, .black, scale: s)
        guard right - left > 20, bottom - plotTop > 20 else { return }
        let points = series.flatMap(\.points)
        guard !points.isEmpty else {
            c.line(left, bottom, right, bottom, .black)
            c.line(left, plotTop, left, bottom, .black)
            let msg = "no data"
            c.text(msg, x: (left + right - Canvas.textWidth(msg, scale: s)) / 2, y: (plotTop + bottom) / 2, .black, scale: s)
            return
        }
        let (x0, x1) = padded(points.map(\.0).min()!, points.map(\.0).max()!, margin: 0.02)
        let (y0, y1) = padded(points.map(\.1).min()!, points.map(\.1).max()!, margin: 0.05)
        func px(_ v: Double) -> Int { left + Int(((v - x0) / (x1 - x0) * Double(right - left)).rounded()) }
        func py(_ v: Double) -> Int { bottom - Int(((v - y0) / (y1 - y0) * Double(bottom - plotTop)).rounded()) }
        // Grid, ticks and tick labels.
        let (xt, xd) = ticks(x0, x1, target: max(2, (right - left) / (60 * s)))
        for t in xt {
            c.line(px(t), plotTop, px(t), bottom, grey)
            c.line(px(t), bottom, px(t), bottom + 4 * s, .black)
            let label = format(t, decimals: xd)
            c.text(label, x: px(t) - Canvas.textWidth(label, scale: s) / 2, y: bottom + 6 * s, .black, scale: s)
        }
        let (yt, yd) = ticks(y0, y1, target: max(2, (bottom - plotTop) / (40 * s)))
        for t in yt {
            c.line(left, py(t), right, py(t), grey)
            c.line(left - 4 * s, py(t), left, py(t), .black)
            let label = format(t, decimals: yd)
            c.text(label, x: left - 6 * s - Canvas.textWidth(label, scale: s), y: py(t) - th / 2, .black, scale: s)
        }
        c.text(xName, x: (left + right - Canvas.textWidth(xName, scale: s)) / 2, y: bottom + th + 10 * s, .black, scale: s)
        c.verticalText(title, x: x + 4 * s, y: (plotTop + bottom - Canvas.textWidth(title, scale: s)) / 2, .black, scale: s)
        // Curves.
        for sr in series {
            let pts = sr.points.sorted { $0.0 < $1.0 }
            for (a, b) in zip(pts, pts.dropFirst()) {
                c.line(px(a.0), py(a.1), px(b.0), py(b.1), sr.color, thickness: sr.thickness * s)
            }
            if sr.markers || pts.count == 1 {
                let m = 3 * s
                for p in pts { c.fillRect(x: px(p.0) - m, y: py(p.1) - m, width: 2 * m + 1, height: 2 * m + 1, sr.color) }
            }
        }
        // Axes on top of the grid.
        c.line(left, bottom, right, bottom, .black, thickness: s)
        c.line(left, plotTop, left, bottom, .black, thickness: s)
        // Legend on a white box, in the corner that covers the fewest data points (sampled along
        // the curves): top right, bottom right, top left, bottom left.
        let rowH = th + 6 * s
        let legendW = (series.map { Canvas.textWidth($0.name, scale: s) }.max() ?? 0) + 30 * s
        let legendH = rowH * series.count
        var samples = [(Int, Int)]()
        for sr in series {
            let pts = sr.points.sorted { $0.0 < $1.0 }
            samples += pts.map { (px($0.0), py($0.1)) }
            for (a, b) in zip(pts, pts.dropFirst()) {
                for k in 1..<8 {
                    let f = Double(k) / 8
                    samples.append((px(a.0 + (b.0 - a.0) * f), py(a.1 + (b.1 - a.1) * f)))
                }
            }
        }
        let corners = [(right - legendW - 6 * s, plotTop + 6 * s), (right - legendW - 6 * s, bottom - legendH - 6 * s),
                       (left + 10 * s, plotTop + 6 * s), (left + 10 * s, bottom - legendH - 6 * s)]
        let (lx, ly) = corners.min { a, b in
            func covered(_ corner: (Int, Int)) -> Int {
                samples.filter { p in p.0 >= corner.0 - 8 * s && p.0 <= corner.0 + legendW + 8 * s
                    && p.1 >= corner.1 - 8 * s && p.1 <= corner.1 + legendH + 8 * s }.count
            }
            return covered(a) < covered(b)
        }!
        c.fillRect(x: lx - 4 * s, y: ly - 4 * s, width: legendW + 8 * s, height: rowH * series.count + 4 * s, .white)
        for (i, sr) in series.enumerated() {
            let yy = ly + i * rowH + th / 2
            c.line(lx, yy, lx + 18 * s, yy, sr.color, thickness: 2 * s)
            c.text(sr.name, x: lx + 24 * s, y: yy - th / 2, .black, scale: s)
        }
    }

    /// [lo, hi] widened by `margin` of the range (or by ±0.5 / ±10% when lo == hi).
    static func padded(_ lo: Double, _ hi: Double, margin: Double) -> (Double, Double) {
        if hi - lo < 1e-12 * max(1, abs(hi)) {
            let d = lo == 0 ? 0.5 : abs(lo) * 0.1
            return (lo - d, hi + d)
        }
        let d = (hi - lo) * margin
        return (lo - d, hi + d)
    }

    /// "Nice" tick positions (1, 2 or 5 × 10^k apart) inside [lo, hi], about `target` of them, and
    /// the number of decimals their labels need.
    static func ticks(_ lo: Double, _ hi: Double, target: Int) -> ([Double], Int) {
        let raw = (hi - lo) / Double(max(1, target))
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw * 0.8 } ?? 10 * magnitude
        var out = [Double]()
        var t = (lo / step).rounded(.up) * step
        while t <= hi + step * 1e-9 && out.count < 100 {
            out.append(abs(t) < step * 1e-9 ? 0 : t)
            t += step
        }
        return (out, max(0, Int(-floor(log10(step) + 1e-9))))
    }

    static func format(_ v: Double, decimals: Int) -> String { String(format: "%.\(min(decimals, 8))f", v) }
}

/// The largest images `plot` and `visualize` draw: 16384 pixels a side and 64 megapixels in all
/// (192 MiB of RGB), checked before the canvas is allocated.
public enum ImageLimits {
    public static let maxSide = 16384
    public static let maxPixels = 64 << 20

    public static func check(width: Int, height: Int, what: String) throws {
        guard width <= maxSide, height <= maxSide, width.multipliedReportingOverflow(by: height).partialValue <= maxPixels else {
            throw SGEError.invalidArgument("\(what): a \(width)x\(height) image is over the limit of \(maxSide) pixels a side "
                + "and \(maxPixels >> 20) megapixels in all")
        }
    }
}
