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
            followed by clFinish (wall clock), after warm-up runs; the median of the repeats is reported, \
            with the measurements interleaved round-robin so load from other processes hits all alike. \
            FLOPs per direction: 2·N·Cout·Cin·KH·KW·OH·OW (backward = grad input + grad weight = 2 directions). \
            The 3×3 case is timed with every ConvAlgorithm; indented rows break the work down.
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
        /// gflops as a fraction of the plain SGEMM of the same size (the device's practical peak here).
        var ofSgemm: Double = 0
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
                    print("  \(r.name.padding(toLength: 18, withPad: " ", startingAt: 0)) \(r.what.padding(toLength: 44, withPad: " ", startingAt: 0))"
                          + String(format: "%9.2f ms %8.1f GFLOP/s", r.ms, r.gflops) + (r.gflops > 0 ? String(format: " %5.0f%% of SGEMM", 100 * r.ofSgemm) : ""))
                }
            }
        }
    }

    /// One timed thing: a label, its FLOPs (0: not a compute measurement) and the enqueueing body.
    struct Measurement {
        var what: String
        var flops: Double
        var body: () throws -> Void
    }

    /// Median wall-clock milliseconds of each body + clFinish. The measurements are interleaved
    /// round-robin (one sample of each per round), so load from other processes on a shared
    /// machine hits every variant alike instead of whichever happened to run during it.
    func time(_ device: OpenCLBackend, _ ms: [Measurement]) throws -> [Double] {
        for m in ms {
            for _ in 0..<warmup {
                try m.body()
                try device.synchronize()
            }
        }
        var samples = [[Double]](repeating: [], count: ms.count)
        for _ in 0..<repeats {
            for (i, m) in ms.enumerated() {
                let t0 = DispatchTime.now().uptimeNanoseconds
                try m.body()
                try device.synchronize()
                samples[i].append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
            }
        }
        return samples.map { $0.sorted()[$0.count / 2] }
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
        var list: [Measurement] = []
        let saved = device.convWorkspace.algorithm
        defer { device.convWorkspace.algorithm = saved }
        // Every algorithm for the 3×3 case; the 1×1 case with the configured one (`.wide` by default).
        let algorithms: [ConvAlgorithm] = k == 1 ? [saved] : ConvAlgorithm.allCases
        for a in algorithms {
            let tag = a.rawValue
            list.append(Measurement(what: "forward \(tag)", flops: flops) {
                device.convWorkspace.algorithm = a
                _ = try device.conv2dForward(x, weight: w, bias: b, params: params)
            })
            if a == .im2colGemm { continue }  // their backward is im2colBatchedGemm's
            list.append(Measurement(what: "backward \(tag) (gx + gw + gb)", flops: 2 * flops) {
                device.convWorkspace.algorithm = a
                _ = try device.conv2dBackward(go, x: x, weight: w, params: params, gradWeight: gw, gradBias: gb, needInputGrad: true)
            })
            list.append(Measurement(what: "backward \(tag) gw only", flops: flops) {
                device.convWorkspace.algorithm = a
                _ = try device.conv2dBackward(go, x: x, weight: w, params: params, gradWeight: gw, gradBias: nil, needInputGrad: false)
            })
        }
        // The equivalent plain GEMM: M = Cout, N = OH·OW·batch, K = Cin·KH·KW.
        let (m, n, kk) = (cout, oh * ow * batch, cin * k * k)
        // Filled with values in [-1, 1]: uninitialised memory can hold denormals, which make CPU
        // devices many times slower and the timing meaningless.
        let a = try device.tensor(rng.uniforms(m * kk), [m * kk]).deviceBuffer()
        let bm = try device.tensor(rng.uniforms(kk * n), [kk * n]).deviceBuffer()
        let c = try device.tensor(rng.uniforms(m * n), [m * n]).deviceBuffer()
        list.append(Measurement(what: "SGEMM M=\(m) N=\(n) K=\(kk)", flops: flops) {
            try device.device.enqueueSgemm(.no, .no, m: m, n: n, k: kk, a: a, lda: kk, b: bm, ldb: n, c: c, ldc: n)
        })
        // Breakdown: per-image GEMMs (batched or looped) and the CLBlast im2col passes alone.
        let p = oh * ow
        list.append(Measurement(what: "  batched SGEMM \(batch)× N=\(p)", flops: flops) {
            try device.device.enqueueSgemmStridedBatched(.no, .no, m: m, n: p, k: kk, a: a, lda: kk, strideA: 0, b: bm, ldb: p,
                                                         strideB: kk * p, c: c, ldc: p, strideC: m * p, batch: batch)
        })
        list.append(Measurement(what: "  looped SGEMM \(batch)× N=\(p)", flops: flops) {
            for i in 0..<batch {
                try device.device.enqueueSgemm(.no, .no, m: m, n: p, k: kk, a: a, lda: kk, b: bm, bOffset: i * kk * p, ldb: p,
                                               c: c, cOffset: i * m * p, ldc: p)
            }
        })
        // The grad-weight GEMM shape: one long reduction over the batch vs one GEMM per image.
        list.append(Measurement(what: "  gw SGEMM NT M=\(m) N=\(kk) K=\(n)", flops: flops) {
            try device.device.enqueueSgemm(.no, .yes, m: m, n: kk, k: n, a: c, lda: n, b: bm, ldb: n, beta: 1, c: a, ldc: kk)
        })
        list.append(Measurement(what: "  gw SGEMM NT \(batch)× K=\(p)", flops: flops) {
            for i in 0..<batch {
                try device.device.enqueueSgemm(.no, .yes, m: m, n: kk, k: p, a: c, aOffset: i * m * p, lda: p, b: bm, bOffset: i * kk * p,
                                               ldb: p, beta: 1, c: a, ldc: kk)
            }
        })
        if k > 1 {
            let g = CLContext.ConvGeometry(channels: cin, height: size, width: size, kernelH: k, kernelW: k, padH: pad, padW: pad,
                                           strideH: 1, strideW: 1, dilationH: 1, dilationW: 1)
            let xb = try x.deviceBuffer()
            list.append(Measurement(what: "  im2col \(batch) images", flops: 0) {
                for i in 0..<batch {
                    try device.device.enqueueIm2col(g, im: xb, imOffset: i * cin * size * size, col: bm, colOffset: i * kk * p)
                }
            })
        }
        let times = try time(device, list)
        var rows = zip(list, times).map { m, ms in Row(name: name, what: m.what, ms: ms, gflops: m.flops / (ms * 1e6)) }
        let peak = rows.first { $0.what.hasPrefix("SGEMM") }?.gflops ?? 0
        for i in rows.indices where peak > 0 { rows[i].ofSgemm = rows[i].gflops / peak }
        return rows
    }
}
