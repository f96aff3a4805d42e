import ArgumentParser
import Foundation
import SGEBench
import SGEEngine
import SGEOpenCL
import SGETensor

/// `sge validate`: every op of the selected device against the CPU reference on random awkward shapes.
struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Validate the selected OpenCL device against the CPU reference, op by op.",
        discussion: """
            For each op (\(Validator.ops.joined(separator: ", "))) and direction, runs --cases random cases \
            with awkward shapes on the device and on the pure-Swift reference and compares every output \
            (activations, saved statistics, accumulated parameter gradients, running statistics). An element \
            passes when |device - reference| <= atol + rtol·|reference|; the tolerance column gives the rule \
            (u = 2^-24, L = the reduction length behind the output). 'used' is the largest share of the \
            tolerance any element needed. Case i runs with seed S+i: a failing case is replayed alone with \
            `sge validate --op NAME --seed S+i --cases 1`. Exits 1 if any case fails.
            """)

    @OptionGroup var options: DeviceOptions
    @Option(help: "Random cases per op.") var cases = 50
    @Option(help: "Seed of the first case (case i uses seed+i).") var seed: UInt64 = 1
    @Option(parsing: .upToNextOption, help: "Only these ops (repeatable or comma-separated). Default: all.")
    var op: [String] = []
    @Flag(help: "Print a JSON document instead of the table.") var json = false

    func run() throws {
        try runCLI {
            let ops = op.flatMap { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() } }
                .filter { !$0.isEmpty }
            for name in ops where !Validator.ops.contains(name) {
                throw SGEError.invalidArgument("sge validate: unknown op '\(name)'; known ops: \(Validator.ops.joined(separator: ", "))")
            }
            guard cases > 0 else { throw SGEError.invalidArgument("sge validate: --cases must be positive, got \(cases)") }
            let choice = try options.choose(quiet: json)
            if choice.backend is ReferenceBackend {
                throw SGEError.invalidArgument("sge validate compares a device with the CPU reference, but the selected device "
                    + "is the reference backend itself (\(choice.reason)): that would compare the reference with itself. "
                    + "Select an OpenCL device with --device (see `sge devices`)")
            }
            let validator = Validator(device: choice.backend)
            let start = Date()
            var opStart = Date()
            let report = try validator.run(ops: ops.isEmpty ? Validator.ops : ops, cases: cases, seed: seed) { name, done, total in
                if done == total {
                    FileHandle.standardError.write(Data(String(format: "validate: %@ %d cases, %.1f s\n", name, total,
                                                               Date().timeIntervalSince(opStart)).utf8))
                    opStart = Date()
                }
            }
            let seconds = Date().timeIntervalSince(start)
            if json {
                try printJSON(report, info: choice.info, seconds: seconds)
            } else {
                printTable(report, info: choice.info, seconds: seconds)
            }
            if !report.passed {
                for row in report.failed {
                    FileHandle.standardError.write(Data(("sge validate: FAIL \(row.op) \(row.direction): \(row.failures) of \(row.cases) cases; "
                        + "first: \(row.failureShape ?? "?") (seed \(row.failureSeed.map(String.init) ?? "?")): \(row.failureDetail ?? "")\n"
                        + "  reproduce: \(row.reproduce)\(deviceFlag)\n").utf8))
                }
                throw ExitCode(1)
            }
        }
    }

    /// `--device X` for reproduce commands, when one was given.
    var deviceFlag: String { options.device.map { " --device \($0)" } ?? "" }

    func printTable(_ report: ValidationReport, info: DeviceInfo?, seconds: Double) {
        let device = info.map { "\($0.name) [\($0.platformName), driver \($0.driverVersion)]" } ?? report.device
        print("device \(device) vs \(report.reference); \(report.cases) cases per op, seeds \(report.seed)...\(report.seed &+ UInt64(report.cases - 1))")
        func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }
        func num(_ x: Double) -> String { x.isFinite ? String(format: "%.2e", x) : "inf" }
        func pct(_ x: Double) -> String { x.isFinite ? String(format: "%.1f%%", 100 * x) : "inf" }
        let tolWidth = max(9, report.rows.map(\.tolerance.count).max() ?? 0)
        print(pad("op", 14) + pad("direction", 10) + lpad("cases", 6) + lpad("max abs", 10) + lpad("max rel", 10) + lpad("used", 8)
              + "  " + pad("tolerance", tolWidth) + "  result  worst case (seed)")
        for r in report.rows {
            print(pad(r.op, 14) + pad(r.direction, 10) + lpad("\(r.cases)", 6) + lpad(num(r.maxAbs), 10) + lpad(num(r.maxRel), 10)
                  + lpad(pct(r.worstRatio), 8) + "  " + pad(r.tolerance, tolWidth) + "  " + (r.passed ? "PASS  " : "FAIL  ")
                  + "  \(r.worstShape) (seed \(r.worstSeed))")
        }
        let failed = report.failed.count
        print("\(report.rows.count - failed)/\(report.rows.count) passed, \(failed) failed"
              + String(format: " (%.1f s)", seconds) + (failed == 0 ? "" : ": " + report.failed.map { "\($0.op) \($0.direction)" }.joined(separator: ", ")))
    }

    func printJSON(_ report: ValidationReport, info: DeviceInfo?, seconds: Double) throws {
        struct Device: Encodable { var name, platform, vendor, driver, version: String }
        struct Doc: Encodable {
            var device: Device
            var reference: String
            var cases: Int
            var seed: UInt64
            var seconds: Double
            var passed: Bool
            var rows: [ValidationRow]
        }
        let device = Device(name: info?.name ?? report.device, platform: info?.platformName ?? "", vendor: info?.vendor ?? "",
                            driver: info?.driverVersion ?? "", version: info?.deviceVersion ?? "")
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        let doc = Doc(device: device, reference: report.reference, cases: report.cases, seed: report.seed,
                      seconds: (seconds * 100).rounded() / 100, passed: report.passed, rows: report.rows)
        print(String(decoding: try enc.encode(doc), as: UTF8.self))
    }
}
