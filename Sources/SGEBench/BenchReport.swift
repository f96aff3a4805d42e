import Foundation
import SGETensor

/// One benchmark measurement: an op in one direction at one shape, with its time spread and rate.
///
/// `ms` is the median of the timed repeats, `msMin`/`msMax` their extremes. The rate is the one
/// `unit` names: `gbps` (bytes moved / time) for memory-bound ops, `gflops` (2·MACs / time) for
/// GEMM-bound ones, `imagesPerSecond` for whole training steps. `fraction` is the rate over the
/// device's measured limit in the same run (copy bandwidth or SGEMM GFLOP/s); nil where none applies.
public struct BenchRow: Codable, Equatable, Sendable {
    public var op: String
    public var direction: String
    public var shape: String
    public var ms: Double
    public var msMin: Double
    public var msMax: Double
    public var gbps: Double?
    public var gflops: Double?
    public var imagesPerSecond: Double?
    public var fraction: Double?
    /// "GB/s", "GFLOP/s" or "images/s".
    public var unit: String
    /// How it was timed: "event" (OpenCL profiling events) or "wall" (whole call + clFinish).
    public var timer: String
    /// Training-step rows: kernels and CLBlast calls per step, the host's issuing time and the
    /// summed device time per step (medians; see `StepBenchmark`).
    public var launches: Int?
    public var hostMs: Double?
    /// The host thread's CPU time over the same span as `hostMs` (less than it when the thread waited for a core).
    public var hostCpuMs: Double?
    public var deviceMs: Double?
    /// Training-step rows: peak device buffers and peak host resident memory, in MiB.
    public var peakDeviceMiB: Double?
    public var peakHostMiB: Double?
    /// Training-step rows with the step memory plan (see `StepMemory`): the peak device buffers of
    /// the last timed step; the plan's arena and the sum of the requests it serves, in MiB; cl_mem
    /// objects created and host tensor storages allocated in the last timed step (the steady state;
    /// the step that makes the plan creates its arena and sub-buffers); requests of planned steps
    /// that fell back to the pool (size mismatch or a region still held).
    public var stepPeakDeviceMiB: Double?
    public var planArenaMiB: Double?
    public var planRequestedMiB: Double?
    public var deviceAllocationsPerStep: Int?
    public var hostAllocationsPerStep: Int?
    /// clSetKernelArg calls in the last timed step (kernels bound once: 0 in a steady step).
    public var kernelArgsSetPerStep: Int?
    public var planFallbacks: Int?

    public init(op: String, direction: String, shape: String, ms: Double, msMin: Double, msMax: Double, gbps: Double? = nil,
                gflops: Double? = nil, imagesPerSecond: Double? = nil, fraction: Double? = nil, unit: String, timer: String) {
        (self.op, self.direction, self.shape, self.ms, self.msMin, self.msMax) = (op, direction, shape, ms, msMin, msMax)
        (self.gbps, self.gflops, self.imagesPerSecond, self.fraction, self.unit, self.timer) = (gbps, gflops, imagesPerSecond, fraction, unit, timer)
    }

    /// The rate in `unit`.
    public var rate: Double? {
        switch unit {
        case "GB/s": return gbps
        case "GFLOP/s": return gflops
        case "images/s": return imagesPerSecond
        default: return gbps ?? gflops ?? imagesPerSecond
        }
    }

    /// Rows of two reports match when op, direction and shape are equal.
    public var key: String { "\(op)|\(direction)|\(shape)" }

    enum CodingKeys: String, CodingKey {
        case op, direction, shape, ms, unit, timer, gbps, gflops, fraction, launches
        case msMin = "ms_min", msMax = "ms_max", imagesPerSecond = "images_per_s", hostMs = "host_ms", deviceMs = "device_ms"
        case hostCpuMs = "host_cpu_ms"
        case peakDeviceMiB = "peak_device_mib", peakHostMiB = "peak_host_mib"
        case stepPeakDeviceMiB = "step_peak_device_mib", planArenaMiB = "plan_arena_mib", planRequestedMiB = "plan_requested_mib"
        case deviceAllocationsPerStep = "device_allocations_per_step", hostAllocationsPerStep = "host_allocations_per_step",
             kernelArgsSetPerStep = "kernel_args_set_per_step"
        case planFallbacks = "plan_fallbacks"
    }
}

/// A whole `sge bench` run: the device it ran on and its rows (the JSON document of `sge bench --json`).
public struct BenchReport: Codable, Equatable, Sendable {
    public var device: String
    public var platform: String
    public var driver: String
    public var sgeVersion: String
    /// ISO 8601, UTC.
    public var timestamp: String
    public var rows: [BenchRow]

    public init(device: String, platform: String, driver: String, sgeVersion: String, timestamp: String = BenchReport.now(), rows: [BenchRow]) {
        (self.device, self.platform, self.driver, self.sgeVersion, self.timestamp, self.rows) = (device, platform, driver, sgeVersion, timestamp, rows)
    }

    enum CodingKeys: String, CodingKey {
        case device, platform, driver, timestamp, rows
        case sgeVersion = "sge_version"
    }

    /// The current time as ISO 8601 (UTC).
    public static func now() -> String { ISO8601DateFormatter().string(from: Date()) }

    /// Pretty-printed JSON with sorted keys (stable, diff-friendly).
    public func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }

    /// Decodes a report; `source` names it in the error.
    public static func decode(_ data: Data, source: String) throws -> BenchReport {
        do {
            return try JSONDecoder().decode(BenchReport.self, from: data)
        } catch {
            throw SGEError.corruptFile(path: source, reason: "not an `sge bench --json` report: \(error)")
        }
    }

    /// Reads a report from a file.
    public static func load(path: String) throws -> BenchReport {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SGEError.invalidArgument("bench --compare: cannot read \(path)")
        }
        return try decode(data, source: path)
    }
}

/// Two reports side by side: rows matched by op/direction/shape, in A's order then B-only rows.
public struct BenchComparison: Sendable {
    public struct Pair: Sendable {
        public var key: String
        public var a: BenchRow?
        public var b: BenchRow?
        /// Speed-up of B over A: A's median ms / B's median ms (> 1: B is faster). Nil unless both exist.
        public var speedup: Double? {
            guard let a, let b, b.ms > 0 else { return nil }
            return a.ms / b.ms
        }
    }

    public var deviceA: String
    public var deviceB: String
    public var pairs: [Pair]

    public init(_ a: BenchReport, _ b: BenchReport) {
        deviceA = a.device
        deviceB = b.device
        var bByKey: [String: BenchRow] = [:]
        for row in b.rows where bByKey[row.key] == nil { bByKey[row.key] = row }
        var seen = Set<String>()
        pairs = []
        for row in a.rows where !seen.contains(row.key) {
            seen.insert(row.key)
            pairs.append(Pair(key: row.key, a: row, b: bByKey[row.key]))
        }
        for row in b.rows where !seen.contains(row.key) {
            seen.insert(row.key)
            pairs.append(Pair(key: row.key, a: nil, b: row))
        }
    }

    /// Geometric mean of the speed-ups of the matched rows (nil when none match).
    public var geometricMeanSpeedup: Double? {
        let s = pairs.compactMap(\.speedup).filter { $0 > 0 }
        guard !s.isEmpty else { return nil }
        return exp(s.map { log($0) }.reduce(0, +) / Double(s.count))
    }

    /// A plain-text table: op, direction, shape, A and B medians and rates, B/A speed-up.
    public func table() -> String {
        // Each side: "median ms  rate unit", a fixed 34 columns.
        func cell(_ r: BenchRow?) -> String {
            guard let r else { return cellPad("—", 34, left: true) }
            let rate = r.rate.map { String(format: "%10.2f ", $0) + cellPad(r.unit, 8) } ?? String(repeating: " ", count: 19)
            return cellPad(String(format: "%12.3f ms", r.ms) + rate, 34, left: true)
        }
        var lines = ["A: \(deviceA)", "B: \(deviceB)",
                     cellPad("op", 12) + cellPad("direction", 10) + cellPad("shape", 22) + cellPad("A: ms, rate", 34, left: true)
                        + cellPad("B: ms, rate", 34, left: true) + cellPad("B/A speed-up", 14, left: true)]
        for p in pairs {
            let r = (p.a ?? p.b)!
            lines.append(cellPad(r.op, 12) + cellPad(r.direction, 10) + cellPad(r.shape, 22) + cell(p.a) + cell(p.b)
                         + cellPad(p.speedup.map { String(format: "%.2f×", $0) } ?? "—", 14, left: true))
        }
        if let g = geometricMeanSpeedup { lines.append(String(format: "geometric mean speed-up (B over A, matched rows): %.2f×", g)) }
        return lines.joined(separator: "\n")
    }
}

/// `s` padded with spaces to `width` characters, on the right or (left: true) on the left; longer
/// strings are kept whole. The column helper of every table sge prints.
public func pad(_ s: String, _ width: Int, left: Bool = false) -> String {
    let fill = String(repeating: " ", count: max(0, width - s.count))
    return left ? fill + s : s + fill
}

/// A table cell: `pad`, with one space after a right-padded value that fills its column.
func cellPad(_ s: String, _ width: Int, left: Bool = false) -> String {
    s.count < width || left ? pad(s, width, left: left) : s + " "
}
