import ArgumentParser
import Foundation
import SGEBench
import SGEEngine
import SGEOpenCL
import SGETensor

/// `sge bench gemm`: CLBlast SGEMM GFLOP/s at given shapes (whole calls timed with clFinish).
struct BenchGemm: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract: "Time CLBlast SGEMM (row-major) at given shapes: whole calls with clFinish, median of repeats.",
        discussion: "Shapes are MxNxK with an optional transpose suffix, e.g. 512x512x512 or 16x100352x144:NN or 144x784x16:TN (op(A) is M×K, op(B) is K×N).")

    @OptionGroup var options: DeviceOptions
    @Argument(help: "Shapes MxNxK[:AB] with A, B in {N, T}.") var shapes: [String] = ["512x512x512"]
    @Option(help: "Timed repeats (median reported).") var repeats = 5
    @Option(help: "Untimed warm-up calls.") var warmup = 2
    @Flag(help: "Print JSON.") var json = false
    @Option(help: "CLBlast parameter override before timing, e.g. 'Xgemm:MWG=64,NWG=64,...' (repeatable).")
    var override: [String] = []

    func run() throws {
        try runCLI {
            let choice = try options.choose(quiet: json)
            guard let device = choice.backend as? OpenCLBackend else {
                throw SGEError.invalidArgument("sge bench gemm times CLBlast; select an OpenCL device with --device")
            }
            for o in override {
                let parts = o.split(separator: ":", maxSplits: 1)
                guard parts.count == 2 else { throw SGEError.invalidArgument("--override \(o): expected KERNEL:NAME=VALUE,...") }
                var values: [String: Int] = [:]
                for kv in parts[1].split(separator: ",") {
                    let p = kv.split(separator: "=")
                    guard p.count == 2, let v = Int(p[1]) else { throw SGEError.invalidArgument("--override \(o): bad '\(kv)'") }
                    values[String(p[0])] = v
                }
                try device.device.overrideCLBlastParameters(kernel: String(parts[0]), values)
            }
            var rows: [GemmBenchReport.Result] = []
            for spec in shapes {
                let parts = spec.split(separator: ":")
                let dims = parts[0].split(separator: "x").compactMap { Int($0) }
                let trans = parts.count > 1 ? Array(parts[1].uppercased()) : ["N", "N"]
                guard dims.count == 3, dims.allSatisfy({ $0 > 0 }), trans.count == 2, trans.allSatisfy({ $0 == "N" || $0 == "T" }) else {
                    throw SGEError.invalidArgument("shape '\(spec)': expected MxNxK[:AB] with A, B in {N, T}")
                }
                let ms = try GemmTiming.median(device.device, m: dims[0], n: dims[1], k: dims[2], ta: trans[0] == "T", tb: trans[1] == "T",
                                               repeats: repeats, warmup: warmup)
                let gflops = 2 * Double(dims[0]) * Double(dims[1]) * Double(dims[2]) / (ms * 1e6)
                rows.append(.init(shape: spec, ms: ms, gflops: gflops))
                if !json { print(spec.padding(toLength: 24, withPad: " ", startingAt: 0) + String(format: " %9.3f ms  %7.1f GFLOP/s", ms, gflops)) }
            }
            if json {
                print(try jsonText(GemmBenchReport(device: device.name, driver: device.device.info.driverVersion, results: rows)))
            }
        }
    }
}

/// Whole-call SGEMM timing (CLBlast enqueues several kernels, so one event is not the call).
enum GemmTiming {
    static func median(_ ctx: CLContext, m: Int, n: Int, k: Int, ta: Bool, tb: Bool, repeats: Int, warmup: Int) throws -> Double {
        try samples(ctx, m: m, n: n, k: k, ta: ta, tb: tb, repeats: repeats, warmup: warmup).median
    }

    /// Median, min and max ms of `repeats` whole SGEMM calls after `warmup` untimed ones.
    static func samples(_ ctx: CLContext, m: Int, n: Int, k: Int, ta: Bool, tb: Bool, repeats: Int, warmup: Int) throws -> BenchTiming.Stats {
        var rng = SeededRNG(seed: 1)
        func buffer(_ count: Int) throws -> CLBuffer {
            let b = try ctx.buffer(bytes: count * 4)
            let values = rng.uniforms(count)
            _ = try values.withUnsafeBytes { try ctx.write(b, from: $0.baseAddress!, bytes: count * 4, blocking: true) }
            return b
        }
        let a = try buffer(m * k), b = try buffer(k * n), c = try buffer(m * n)
        let lda = ta ? m : k, ldb = tb ? k : n
        var times: [Double] = []
        for i in 0..<(warmup + repeats) {
            try ctx.finish()
            let start = DispatchTime.now().uptimeNanoseconds
            try ctx.enqueueSgemm(ta ? .yes : .no, tb ? .yes : .no, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: n)
            try ctx.finish()
            if i >= warmup { times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6) }
        }
        return BenchTiming.Stats(times)
    }
}
