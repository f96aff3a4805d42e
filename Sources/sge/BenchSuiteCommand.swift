import ArgumentParser
import Foundation
import SGEEngine
import SGEBench
import SGENet
import SGEOpenCL
import SGETensor

/// `sge bench` (the default subcommand): the microbenchmark suite — device limits, every kernel at
/// ResNet shapes against those limits, and a whole training step.
struct BenchSuite: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "suite",
        abstract: "Device limits, every op at ResNet shapes (fraction of the limits) and a training step; --compare two JSON runs.",
        discussion: """
            Limits: the fastest copy on buffers of at least 64 MiB and 4x the device's cache (copy_float4 with the best \
            work-group size, its streaming-store form copy_float4_stream, and clEnqueueCopyBuffer) and CLBlast SGEMM at 1024³ \
            (512³ with --quick). Memory-bound ops report GB/s (the bytes an ideal kernel must move: each input read \
            once, each output written once) as a fraction of the copy bandwidth; convolutions report GFLOP/s \
            (2·N·Cout·Cin·KH·KW·OH·OW per direction; backward = grad input + grad weight) as a fraction of SGEMM. \
            Timer "event": OpenCL profiling events of the op's kernels, from the first one's start to the last one's end \
            (ops made of sge's own kernels, as the copy limit is timed); "wall": the whole call followed by clFinish \
            (convolutions and SGEMM, which run CLBlast). Each row: median of the repeats after \
            warm-up runs, with min and max. Finally a training step of ResNetConfig.small() at batch 128 on \
            synthetic 1×28×28 data with SGD (images/s). --json prints one document; --compare A.json B.json \
            prints two such documents side by side with the B/A speed-up (A's ms over B's).
            """)

    @OptionGroup var options: DeviceOptions
    @Flag(help: "A smaller, faster run: fewer repeats, SGEMM at 512³, fewer training steps.") var quick = false
    @Option(help: "Timed repeats per row (default 7; 3 with --quick).") var repeats: Int?
    @Option(help: "Untimed warm-up runs per row (default 2; 1 with --quick).") var warmup: Int?
    @Flag(help: "Print the JSON report instead of a table.") var json = false
    @Option(parsing: .upToNextOption, help: "Compare two reports written by --json: --compare A.json B.json.")
    var compare: [String] = []

    func run() throws {
        try runCLI {
            if !compare.isEmpty {
                guard compare.count == 2 else {
                    throw SGEError.invalidArgument("--compare takes exactly two JSON reports (A.json B.json), got \(compare.count)")
                }
                let c = BenchComparison(try BenchReport.load(path: compare[0]), try BenchReport.load(path: compare[1]))
                print(c.table())
                return
            }
            let repeats = self.repeats ?? (quick ? 3 : 7), warmup = self.warmup ?? (quick ? 1 : 2)
            guard repeats >= 1, warmup >= 0 else {
                throw SGEError.invalidArgument("--repeats must be ≥ 1 and --warmup ≥ 0, got \(repeats) and \(warmup)")
            }
            let choice = try options.choose(quiet: json)
            guard let info = choice.info, let backend = choice.backend as? OpenCLBackend else {
                throw SGEError.invalidArgument("sge bench needs an OpenCL device (profiling events, CLBlast); select one with --device")
            }
            let start = Date()
            var suite = SuiteRunner(backend: backend, repeats: repeats, warmup: warmup, quick: quick, live: !json)
            if !json { print("device \(info.name) [\(info.platformName), driver \(info.driverVersion)]; median of \(repeats) after \(warmup) warm-up") }
            try suite.runAll()
            let report = BenchReport(device: info.name, platform: info.platformName, driver: info.driverVersion, sgeVersion: sgeVersion,
                                     rows: suite.rows)
            if json {
                print(String(decoding: try report.json(), as: UTF8.self))
            } else {
                print(String(format: "total %.1f s", Date().timeIntervalSince(start)))
            }
        }
    }
}

/// Runs the suite's measurements and collects the rows.
struct SuiteRunner {
    let backend: OpenCLBackend
    let repeats: Int
    let warmup: Int
    let quick: Bool
    /// Print each row as it is measured.
    let live: Bool
    var rows: [BenchRow] = []
    var copyGBps = 0.0
    var sgemmGFlops = 0.0
    var rng = SeededRNG(seed: 7)

    init(backend: OpenCLBackend, repeats: Int, warmup: Int, quick: Bool, live: Bool) {
        (self.backend, self.repeats, self.warmup, self.quick, self.live) = (backend, repeats, warmup, quick, live)
    }

    mutating func runAll() throws {
        if live {
            print(pad("op", 14) + pad("direction", 10) + pad("shape", 28) + pad("ms", 10, left: true) + pad("min", 9, left: true)
                  + pad("max", 9, left: true) + pad("rate", 17, left: true) + pad("of limit", 9, left: true) + "  timer")
        }
        try limits()
        try sge()
        try conv()
        try batchNorm()
        try elementwise()
        try pools()
        try loss()
        try sgd()
        try trainingStep()
    }

    // MARK: Recording

    enum Limit { case copy, sgemm, none }

    /// Records a row; `bytes` or `flops` (per call) give the rate, `limit` the fraction's denominator.
    mutating func record(_ op: String, _ direction: String, _ shape: String, _ s: BenchTiming.Stats, bytes: Double? = nil,
                         flops: Double? = nil, images: Double? = nil, limit: Limit, timer: String) {
        var row = BenchRow(op: op, direction: direction, shape: shape, ms: s.median, msMin: s.min, msMax: s.max, unit: "", timer: timer)
        if let bytes {
            row.gbps = bytes / s.median / 1e6
            row.unit = "GB/s"
        } else if let flops {
            row.gflops = flops / s.median / 1e6
            row.unit = "GFLOP/s"
        } else if let images {
            row.imagesPerSecond = images / s.median * 1e3
            row.unit = "images/s"
        }
        switch limit {
        case .copy where copyGBps > 0: row.fraction = row.gbps.map { $0 / copyGBps }
        case .sgemm where sgemmGFlops > 0: row.fraction = row.gflops.map { $0 / sgemmGFlops }
        default: break
        }
        rows.append(row)
        if live {
            let rate = row.rate.map { String(format: "%9.2f %-7@", $0, row.unit as NSString) } ?? ""
            print(pad(op, 14) + pad(direction, 10) + pad(shape, 28) + String(format: "%10.3f%9.3f%9.3f", s.median, s.min, s.max)
                  + pad(rate, 17, left: true) + pad(row.fraction.map { String(format: "%.0f%%", 100 * $0) } ?? "", 9, left: true) + "  " + timer)
            fflush(stdout)
        }
    }

    /// Stats of a call timed by its kernels' profiling events, from the first one's start to the last
    /// one's end (ops made only of sge's own kernels; a CLBlast call is refused, its event covers only
    /// its last kernel).
    func event(_ body: () throws -> Void) throws -> BenchTiming.Stats {
        let recorder = LaunchRecorder(), previous = backend.device.recorder
        backend.device.recorder = recorder
        defer { backend.device.recorder = previous }
        return try BenchTiming.sample(warmup: warmup, repeats: repeats) {
            recorder.reset()
            try body()
            guard let ms = try recorder.spanMilliseconds() else {
                throw SGEError.invalidArgument("bench: the op enqueued no kernel, or a CLBlast call (time it with wall)")
            }
            return ms
        }
    }

    /// Stats of a whole call + clFinish.
    func wall(_ body: () throws -> Void) throws -> BenchTiming.Stats {
        try BenchTiming.sample(warmup: warmup, repeats: repeats) { try BenchTiming.wall(backend, body) }
    }

    mutating func random(_ shape: Shape, _ label: String) throws -> Tensor {
        try backend.tensor(rng.uniforms(shape.count), shape, label: label)
    }

    static func describe(_ s: Shape) -> String { s.dims.map(String.init).joined(separator: "x") }

    // MARK: Measurements

    mutating func limits() throws {
        // The copy limit is the fastest of the copy_float4 kernel, its streaming-store form and the
        // driver's clEnqueueCopyBuffer.
        let copy = try BenchTiming.CopyProbe(backend, warmup: warmup, repeats: repeats)
        record("copy", "limit", "\(copy.bytes >> 20) MiB copy_float4", copy.initial, bytes: Double(2 * copy.bytes), limit: .none, timer: "event")
        // Its own program (Kernels/bandwidth.cl): a driver that cannot build it loses only this row.
        var streamGBps = 0.0
        do {
            let stream = try BenchTiming.CopyProbe(backend, kernel: .stream, sharing: copy, warmup: warmup, repeats: repeats)
            record("copy", "limit", "\(stream.bytes >> 20) MiB copy_float4_stream", stream.initial, bytes: Double(2 * stream.bytes), limit: .none,
                   timer: "event")
            streamGBps = stream.aloneGBps
        } catch {
            FileHandle.standardError.write(Data("bench: the streaming-store copy is unavailable, left out of the limit: \(error)\n".utf8))
        }
        let copyBuffer = try BenchTiming.copyBufferBandwidth(backend, warmup: warmup, repeats: repeats)
        record("copy", "limit", "\(copyBuffer.bytes >> 20) MiB clEnqueueCopyBuffer", copyBuffer.stats, bytes: Double(2 * copyBuffer.bytes),
               limit: .none, timer: "event")
        copyGBps = max(copy.aloneGBps, streamGBps, copyBuffer.gbps)
        let n = quick ? 512 : 1024
        let s = try GemmTiming.samples(backend.device, m: n, n: n, k: n, ta: false, tb: false, repeats: repeats, warmup: warmup)
        sgemmGFlops = 2 * pow(Double(n), 3) / s.median / 1e6
        record("sgemm", "limit", "\(n)x\(n)x\(n)", s, flops: 2 * pow(Double(n), 3), limit: .none, timer: "wall")
    }

    /// SGE at the four ResNet-50 stage outputs, batch 8, G = 64: forward reads x and writes out,
    /// backward reads x and grad_out and writes grad_x.
    mutating func sge() throws {
        let g = 64
        for dims in [[8, 256, 56, 56], [8, 512, 28, 28], [8, 1024, 14, 14], [8, 2048, 7, 7]] {
            let shape = Shape(dims)
            let n = Double(shape.count)
            let x = try random(shape, "x"), go = try random(shape, "grad_out")
            let w = try random([g], "weight"), b = try random([g], "bias")
            let gw = backend.zeros([g]), gb = backend.zeros([g])
            var out: Tensor?, gx: Tensor?, saved: SGESaved?
            let fwd = try BenchTiming.sample(warmup: warmup, repeats: repeats) {
                let r = try backend.sgeForward(x, weight: w, bias: b, groups: g, normalize: true, path: .automatic, workGroupSize: nil, reuse: out)
                (out, saved) = (r.out, r.saved)
                return try backend.lastEvent!.milliseconds()
            }
            record("sge", "forward", Self.describe(shape) + " G\(g)", fwd, bytes: 8 * n, limit: .copy, timer: "event")
            let bwd = try BenchTiming.sample(warmup: warmup, repeats: repeats) {
                let r = try backend.sgeBackward(go, x: x, weight: w, bias: b, groups: g, normalize: true, saved: saved!, gradWeight: gw,
                                                gradBias: gb, path: .automatic, workGroupSize: nil, reuse: gx)
                gx = r.gradX
                return try CLEvent.span(r.events.first!, r.events.last!)
            }
            record("sge", "backward", Self.describe(shape) + " G\(g)", bwd, bytes: 12 * n, limit: .copy, timer: "event")
        }
    }

    /// Convolutions of a ResNet-50 stage 1 bottleneck at batch 8, 56×56.
    mutating func conv() throws {
        for (name, cin, cout, k, pad) in [("3x3", 64, 64, 3, 1), ("1x1", 256, 64, 1, 0)] {
            let shape: Shape = [8, cin, 56, 56]
            let params = Conv2dParams(stride: 1, padding: pad)
            let x = try random(shape, "x")
            let w = try backend.tensor(rng.normals(cout * cin * k * k, std: 0.05), [cout, cin, k, k], label: "w")
            let b = try random([cout], "b")
            let go = try random([8, cout, 56, 56], "grad out")
            let gw = backend.zeros(w.shape), gb = backend.zeros([cout])
            let flops = 2.0 * Double(8 * cout * cin * k * k * 56 * 56)
            let label = "\(Self.describe(shape)) \(name)→\(cout)"
            record("conv", "forward", label, try wall { _ = try backend.conv2dForward(x, weight: w, bias: b, params: params) },
                   flops: flops, limit: .sgemm, timer: "wall")
            record("conv", "backward", label, try wall {
                _ = try backend.conv2dBackward(go, x: x, weight: w, params: params, gradWeight: gw, gradBias: gb, needInputGrad: true)
            }, flops: 2 * flops, limit: .sgemm, timer: "wall")
        }
    }

    /// BatchNorm (training) at [8, 64, 56, 56]: forward reads x, writes y; backward reads x and grad_out, writes grad_x.
    mutating func batchNorm() throws {
        let shape: Shape = [8, 64, 56, 56]
        let n = Double(shape.count)
        let x = try random(shape, "x"), go = try random(shape, "grad out")
        let gamma = try random([64], "gamma"), beta = try random([64], "beta")
        let rm = backend.zeros([64]), rv = try backend.tensor([Float](repeating: 1, count: 64), [64])
        let gg = backend.zeros([64]), gbeta = backend.zeros([64])
        var saved: BatchNormSaved?
        record("batchnorm", "forward", Self.describe(shape), try event {
            saved = try backend.batchNormForward(x, gamma: gamma, beta: beta, runningMean: rm, runningVar: rv, training: true,
                                                 momentum: 0.1, eps: 1e-5).saved
        }, bytes: 8 * n, limit: .copy, timer: "event")
        record("batchnorm", "backward", Self.describe(shape), try event {
            _ = try backend.batchNormBackward(go, x: x, gamma: gamma, saved: saved!, gradGamma: gg, gradBeta: gbeta)
        }, bytes: 12 * n, limit: .copy, timer: "event")
    }

    /// ReLU and the residual add at [8, 256, 56, 56] (a bottleneck's output).
    mutating func elementwise() throws {
        let shape: Shape = [8, 256, 56, 56]
        let n = Double(shape.count)
        let x = try random(shape, "x"), y = try random(shape, "y")
        var out: Tensor?
        record("relu", "forward", Self.describe(shape), try event { out = try backend.reluForward(x) }, bytes: 8 * n, limit: .copy, timer: "event")
        record("relu", "backward", Self.describe(shape), try event { _ = try backend.reluBackward(out: out!, gradOut: y) },
               bytes: 12 * n, limit: .copy, timer: "event")
        record("add", "forward", Self.describe(shape), try event { _ = try backend.add(x, y) }, bytes: 12 * n, limit: .copy, timer: "event")
    }

    /// The stem's 3×3/2 max pool on [8, 64, 112, 112] (argmax saved: 4 bytes per output) and the global
    /// average pool on [8, 2048, 7, 7].
    mutating func pools() throws {
        let inShape: Shape = [8, 64, 112, 112]
        let x = try random(inShape, "x")
        let nIn = Double(inShape.count), nOut = Double(8 * 64 * 56 * 56)
        var argmax: Tensor?
        record("maxpool", "forward", Self.describe(inShape) + " 3/2", try event {
            argmax = try backend.maxPoolForward(x, kernel: 3, stride: 2, padding: 1).argmax
        }, bytes: 4 * (nIn + 2 * nOut), limit: .copy, timer: "event")
        let go = try random([8, 64, 56, 56], "grad out")
        record("maxpool", "backward", Self.describe(inShape) + " 3/2", try event {
            _ = try backend.maxPoolBackward(go, argmax: argmax!, inputShape: inShape, kernel: 3, stride: 2, padding: 1)
        }, bytes: 4 * (nIn + 2 * nOut), limit: .copy, timer: "event")
        let gShape: Shape = [8, 2048, 7, 7]
        let gx = try random(gShape, "x"), ggo = try random([8, 2048], "grad out")
        let bytes = 4 * Double(gShape.count + 8 * 2048)
        record("avgpool", "forward", Self.describe(gShape) + " global", try event { _ = try backend.globalAvgPoolForward(gx) },
               bytes: bytes, limit: .copy, timer: "event")
        record("avgpool", "backward", Self.describe(gShape) + " global", try event {
            _ = try backend.globalAvgPoolBackward(ggo, inputShape: gShape)
        }, bytes: bytes, limit: .copy, timer: "event")
    }

    /// Softmax cross-entropy (loss, accuracy and grad in one call) on [256, 1000] logits:
    /// reads the logits and labels, writes the gradient.
    mutating func loss() throws {
        let (n, classes) = (256, 1000)
        let logits = try random([n, classes], "logits")
        let labels = try backend.tensor((0..<n).map { Float($0 % classes) }, [n], label: "labels")
        record("softmax_ce", "fwd+bwd", "\(n)x\(classes)", try event { _ = try backend.softmaxCrossEntropy(logits, labels: labels) },
               bytes: 4 * Double(2 * n * classes + n), limit: .copy, timer: "event")
    }

    /// One SGD step with momentum over ResNet-18's 11 689 512 parameters: reads p, g, buf; writes p, buf.
    mutating func sgd() throws {
        let count = 11_689_512
        let p = try random([count], "param"), g = try random([count], "grad"), buf = backend.zeros([count])
        record("sgd", "step", "\(count)", try event {
            try backend.sgdStep(p, grad: g, momentumBuffer: buf, lr: 1e-6, momentum: 0.9, dampening: 0, weightDecay: 5e-4, nesterov: false,
                                firstStep: false)
        }, bytes: 20 * Double(count), limit: .copy, timer: "event")
    }

    /// Whole training steps (upload, forward, loss, backward, SGD, loss read-back) of the default
    /// model and of ResNet-20 at batch 128 on synthetic data, with launches, host and device time.
    mutating func trainingStep() throws {
        for model in ["small", "resnet20"] {
            let bench = try StepBenchmark(backend: backend, model: model, batch: 128)
            let r = try bench.run(warmup: quick ? 1 : 2, steps: quick ? 3 : 5)
            record("train_step", "step", r.shapeLabel, BenchTiming.Stats(r.wallMs), images: Double(r.batch), limit: .none, timer: "wall")
            rows[rows.count - 1].launches = r.launches
            rows[rows.count - 1].hostMs = median(r.hostMs)
            rows[rows.count - 1].hostCpuMs = median(r.hostCpuMs)
            rows[rows.count - 1].deviceMs = median(r.deviceMs)
            rows[rows.count - 1].addMemoryPlan(r)
            if live {
                print(String(format: "    per step: %d launches, host %.2f ms issuing (%.2f ms of CPU), device %.2f ms (kernel events)",
                             r.launches ?? 0, median(r.hostMs), median(r.hostCpuMs), median(r.deviceMs)))
            }
        }
    }
}
