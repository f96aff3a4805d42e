import ArgumentParser
import Foundation
import SGEEngine
import SGEOpenCL
import SGETensor

/// `sge conv`: times Conv2d forward and backward on the OpenCL backend next to a plain CLBlast
/// SGEMM of the same size, so the im2col/col2im overhead is visible.
struct BenchConv: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conv",
        abstract: "Benchmark Conv2d forward/backward (CLBlast) against a plain SGEMM of the same size.",
        discussion: """
            Cases: 3×3 64→64 pad 1 and 1×1 256→64, both on 56×56 images. Each timing is a whole call \
            followed by clFinish (wall clock), after warm-up runs; the median of the repeats is reported. \
            FLOPs per direction: 2·N·Cout·Cin·KH·KW·OH·OW (backward = grad input + grad weight = 2 directions). \
            The forward of the 3×3 case is timed with every forward algorithm.
            """)

    @OptionGroup var options: DeviceOptions
    @Option(help: "Batch size.") var batch = 8
    @Option(help: "Image height and width.") var size = 56
    @Option(help: "Timed repeats per measurement (the median is reported).") var repeats = 5
    @Option(help: "Untimed warm-up runs per measurement.") var warmup = 2
    @Flag(help: "Print JSON instead of a table.") var json = false

    struct Row: Codable {
        var name: String
        var what: String
        var ms: Double
        var gflops: Double
    }

    func run() throws {
        try runCLI {
            let choice = try options.choose(quiet: json)
            guard let device = choice.backend as? OpenCLBackend else {
                throw SGEError.invalidArgument("sge conv times the OpenCL backend; select an OpenCL device with --device")
            }
            guard batch > 0, size > 0, repeats > 0, warmup >= 0 else {
                throw SGEError.invalidArgument("sge conv: --batch, --size and --repeats must be positive and --warmup non-negative")
            }
            var rows: [Row] = []
            let cases: [(String, Int, Int, Int, Int)] = [("3x3 64->64 pad 1", 64, 64, 3, 1), ("1x1 256->64", 256, 64, 1, 0)]
            for (name, cin, cout, k, pad) in cases {
                rows += try benchCase(device, name: name, cin: cin, cout: cout, kernel: k, pad: pad)
            }
            if json {
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                let doc = ["device": device.name, "batch": "\(batch)", "size": "\(size)"]
                struct Doc: Codable { var config: [String: String]; var results: [Row] }
                print(String(decoding: try enc.encode(Doc(config: doc, results: rows)), as: UTF8.self))
            } else {
                print("device \(device.name), batch \(batch), \(size)×\(size), median of \(repeats) (after \(warmup) warm-up)")
                for r in rows {
                    print("  \(r.name.padding(toLength: 18, withPad: " ", startingAt: 0)) \(r.what.padding(toLength: 34, withPad: " ", startingAt: 0))"
                          + String(format: "%9.2f ms %8.1f GFLOP/s", r.ms, r.gflops))
                }
            }
        }
    }

    /// Median wall-clock milliseconds of `body` + clFinish.
    func time(_ device: OpenCLBackend, _ body: () throws -> Void) throws -> Double {
        for _ in 0..<warmup {
            try body()
            try device.synchronize()
        }
        var samples: [Double] = []
        for _ in 0..<repeats {
            let t0 = DispatchTime.now().uptimeNanoseconds
            try body()
            try device.synchronize()
            samples.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
        }
        samples.sort()
        return samples[samples.count / 2]
    }

    func benchCase(_ device: OpenCLBackend, name: String, cin: Int, cout: Int, kernel k: Int, pad: Int) throws -> [Row] {
        var rng = SeededRNG(seed: 42)
        let params = Conv2dParams(stride: 1, padding: pad)
        let x = try device.tensor(rng.uniforms(batch * cin * size * size), [batch, cin, size, size], label: "x")
        let w = try device.tensor(rng.normals(cout * cin * k * k, std: 0.05), [cout, cin, k, k], label: "w")
        let b = try device.tensor(rng.uniforms(cout), [cout], label: "b")
        let (oh, ow) = (size + 2 * pad - k + 1, size + 2 * pad - k + 1)
        let go = try device.tensor(rng.uniforms(batch * cout * oh * ow), [batch, cout, oh, ow], label: "grad out")
        let gw = device.zeros([cout, cin, k, k], label: "grad w"), gb = device.zeros([cout], label: "grad b")
        let flops = 2.0 * Double(batch * cout * cin * k * k * oh * ow)
        func row(_ what: String, _ ms: Double, directions: Double = 1) -> Row {
            Row(name: name, what: what, ms: ms, gflops: directions * flops / (ms * 1e6))
        }
        var rows: [Row] = []
        let saved = device.convWorkspace.algorithm
        defer { device.convWorkspace.algorithm = saved }
        let algorithms: [ConvAlgorithm] = k == 1 ? [saved] : ConvAlgorithm.allCases
        for a in algorithms {
            device.convWorkspace.algorithm = a
            let ms = try time(device) { _ = try device.conv2dForward(x, weight: w, bias: b, params: params) }
            rows.append(row(k == 1 ? "forward (1x1 GEMM)" : "forward \(a.rawValue)", ms))
        }
        device.convWorkspace.algorithm = saved
        let noBias = try time(device) { _ = try device.conv2dForward(x, weight: w, bias: nil, params: params) }
        rows.append(row("forward \(k == 1 ? "(1x1 GEMM)" : saved.rawValue), no bias", noBias))
        let gi = try time(device) {
            _ = try device.conv2dBackward(go, x: x, weight: w, params: params, gradWeight: gw, gradBias: gb, needInputGrad: true)
        }
        rows.append(row("backward (grad input + weight + bias)", gi, directions: 2))
        let gwOnly = try time(device) {
            _ = try device.conv2dBackward(go, x: x, weight: w, params: params, gradWeight: gw, gradBias: nil, needInputGrad: false)
        }
        rows.append(row("backward grad weight only", gwOnly))
        // The equivalent plain GEMM: M = Cout, N = OH·OW·batch, K = Cin·KH·KW.
        let (m, n, kk) = (cout, oh * ow * batch, cin * k * k)
        let a = try device.device.buffer(bytes: m * kk * 4), bm = try device.device.buffer(bytes: kk * n * 4)
        let c = try device.device.buffer(bytes: m * n * 4)
        let ms = try time(device) {
            try device.device.enqueueSgemm(.no, .no, m: m, n: n, k: kk, a: a, lda: kk, b: bm, ldb: n, c: c, ldc: n)
        }
        rows.append(row("SGEMM M=\(m) N=\(n) K=\(kk)", ms))
        // Breakdown of the forward: the im2col passes alone, and the per-image GEMMs (batched or
        // looped) alone, on the same sizes.
        let p = oh * ow
        let batched = try time(device) {
            try device.device.enqueueSgemmStridedBatched(.no, .no, m: m, n: p, k: kk, a: a, lda: kk, strideA: 0, b: bm, ldb: p,
                                                         strideB: kk * p, c: c, ldc: p, strideC: m * p, batch: batch)
        }
        rows.append(row("  batched SGEMM \(batch)× N=\(p)", batched))
        let looped = try time(device) {
            for i in 0..<batch {
                try device.device.enqueueSgemm(.no, .no, m: m, n: p, k: kk, a: a, lda: kk, b: bm, bOffset: i * kk * p, ldb: p,
                                               c: c, cOffset: i * m * p, ldc: p)
            }
        }
        rows.append(row("  looped SGEMM \(batch)× N=\(p)", looped))
        if k > 1 {
            let g = CLContext.ConvGeometry(channels: cin, height: size, width: size, kernelH: k, kernelW: k, padH: pad, padW: pad,
                                           strideH: 1, strideW: 1, dilationH: 1, dilationW: 1)
            let xb = try x.deviceBuffer()
            let ms = try time(device) {
                for i in 0..<batch {
                    try device.device.enqueueIm2col(g, im: xb, imOffset: i * cin * size * size, col: bm, colOffset: i * kk * p)
                }
            }
            rows.append(Row(name: name, what: "  im2col \(batch) images", ms: ms, gflops: 0))
        }
        return rows
    }
}
