import Foundation
import SGEEngine
import SGEOpenCL
import SGETensor

/// `sge bench conv`: Conv2d forward and backward on the OpenCL backend at two cases (3×3 64→64 pad 1
/// and 1×1 256→64 on `size`×`size` images), next to the plain CLBlast SGEMM of the same size and a
/// breakdown (batched and looped per-image GEMMs, the grad-weight GEMM, im2col). Each timing is a
/// whole call followed by clFinish; the median of `repeats` after `warmup`, interleaved round-robin.
/// FLOPs per direction 2·N·Cout·Cin·KH·KW·OH·OW (backward, grad input + grad weight: twice that);
/// the 3×3 case's Winograd rows count the same FLOPs (an effective rate: F(2×2, 3×3) multiplies 2.25×
/// less).
public struct ConvBenchmark {
    public var batch: Int
    public var size: Int
    public var repeats: Int
    public var warmup: Int

    public init(batch: Int = 8, size: Int = 56, repeats: Int = 5, warmup: Int = 2) throws {
        guard batch > 0, size > 0, repeats > 0, warmup >= 0 else {
            throw SGEError.invalidArgument("bench conv: --batch, --size and --repeats must be positive and --warmup non-negative")
        }
        (self.batch, self.size, self.repeats, self.warmup) = (batch, size, repeats, warmup)
    }

    /// Both cases' rows: every ConvAlgorithm for the 3×3 case, the configured one for 1×1.
    public func run(_ device: OpenCLBackend) throws -> [ConvBenchRow] {
        var rows: [ConvBenchRow] = []
        for (name, cin, cout, k, pad) in [("3x3 64->64 pad 1", 64, 64, 3, 1), ("1x1 256->64", 256, 64, 1, 0)] {
            rows += try benchCase(device, name: name, cin: cin, cout: cout, kernel: k, pad: pad)
        }
        return rows
    }

    /// One timed thing: a label, its FLOPs (0: not a compute measurement) and the enqueueing body.
    struct Measurement {
        var op = "conv"
        var direction: String
        var algorithm: String
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

    func benchCase(_ device: OpenCLBackend, name: String, cin: Int, cout: Int, kernel k: Int, pad: Int) throws -> [ConvBenchRow] {
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
        let saved = device.convWorkspace.algorithm, savedWinograd = device.convWorkspace.winograd
        defer { (device.convWorkspace.algorithm, device.convWorkspace.winograd) = (saved, savedWinograd) }
        // Every algorithm for the 3×3 case; the 1×1 case with the configured one (`.wide` by default).
        let algorithms: [ConvAlgorithm] = k == 1 ? [saved] : ConvAlgorithm.allCases
        for a in algorithms {
            let tag = a.rawValue
            list.append(Measurement(direction: "forward", algorithm: tag, flops: flops) {
                (device.convWorkspace.algorithm, device.convWorkspace.winograd) = (a, false)
                _ = try device.conv2dForward(x, weight: w, bias: b, params: params)
            })
            if a == .im2colGemm { continue }  // their backward is im2colBatchedGemm's
            list.append(Measurement(direction: "backward", algorithm: tag, flops: 2 * flops) {
                (device.convWorkspace.algorithm, device.convWorkspace.winograd) = (a, false)
                _ = try device.conv2dBackward(go, x: x, weight: w, params: params, gradWeight: gw, gradBias: gb, needInputGrad: true)
            })
            list.append(Measurement(direction: "backward gw only", algorithm: tag, flops: flops) {
                (device.convWorkspace.algorithm, device.convWorkspace.winograd) = (a, false)
                _ = try device.conv2dBackward(go, x: x, weight: w, params: params, gradWeight: gw, gradBias: nil, needInputGrad: false)
            })
        }
        // Forward and backward of the wide algorithm with `ConvWorkspace.winograd` set to `winograd`.
        func wide(_ label: String, winograd: Bool?) {
            list.append(Measurement(direction: "forward", algorithm: label, flops: flops) {
                (device.convWorkspace.algorithm, device.convWorkspace.winograd) = (.wide, winograd)
                _ = try device.conv2dForward(x, weight: w, bias: b, params: params)
            })
            list.append(Measurement(direction: "backward", algorithm: label, flops: 2 * flops) {
                (device.convWorkspace.algorithm, device.convWorkspace.winograd) = (.wide, winograd)
                _ = try device.conv2dBackward(go, x: x, weight: w, params: params, gradWeight: gw, gradBias: gb, needInputGrad: true)
            })
        }
        // The path chosen for this shape (timed once per device and stored; named after timing).
        if saved == .wide { wide("chosen", winograd: savedWinograd) }
        // Winograd F(2×2, 3×3): the forward, and the backward as Winograd's grad input plus the wide
        // path's grad weight.
        if k == 3 {
            wide("winograd", winograd: true)
            // Winograd's own grad weight (`.winogradFull`, CPU drivers): whole backward and grad weight only.
            if !device.device.info.isGPU {
                let savedGW = device.convWorkspace.winogradWeightGrad
                for gwOnly in [false, true] {
                    list.append(Measurement(direction: gwOnly ? "backward gw only" : "backward", algorithm: "winograd-full",
                                            flops: gwOnly ? flops : 2 * flops) {
                        (device.convWorkspace.algorithm, device.convWorkspace.winograd) = (.wide, true)
                        device.convWorkspace.winogradWeightGrad = true
                        defer { device.convWorkspace.winogradWeightGrad = savedGW }
                        _ = try device.conv2dBackward(go, x: x, weight: w, params: params, gradWeight: gw, gradBias: gwOnly ? nil : gb,
                                                      needInputGrad: !gwOnly)
                    })
                }
            }
        }
        // The equivalent plain GEMM: M = Cout, N = OH·OW·batch, K = Cin·KH·KW.
        let (m, n, kk) = (cout, oh * ow * batch, cin * k * k)
        // Filled with values in [-1, 1]: uninitialised memory can hold denormals, which make CPU
        // devices many times slower and the timing meaningless.
        let a = try device.tensor(rng.uniforms(m * kk), [m * kk]).deviceBuffer()
        let bm = try device.tensor(rng.uniforms(kk * n), [kk * n]).deviceBuffer()
        let c = try device.tensor(rng.uniforms(m * n), [m * n]).deviceBuffer()
        list.append(Measurement(op: "sgemm", direction: "NN M=\(m) N=\(n) K=\(kk)", algorithm: "clblast", flops: flops) {
            try device.device.enqueueSgemm(.no, .no, m: m, n: n, k: kk, a: a, lda: kk, b: bm, ldb: n, c: c, ldc: n)
        })
        // Breakdown: per-image GEMMs (batched or looped) and the CLBlast im2col passes alone.
        let p = oh * ow
        list.append(Measurement(op: "sgemm", direction: "NN batched \(batch)x N=\(p)", algorithm: "clblast", flops: flops) {
            try device.device.enqueueSgemmStridedBatched(.no, .no, m: m, n: p, k: kk, a: a, lda: kk, strideA: 0, b: bm, ldb: p,
                                                         strideB: kk * p, c: c, ldc: p, strideC: m * p, batch: batch)
        })
        list.append(Measurement(op: "sgemm", direction: "NN looped \(batch)x N=\(p)", algorithm: "clblast", flops: flops) {
            for i in 0..<batch {
                try device.device.enqueueSgemm(.no, .no, m: m, n: p, k: kk, a: a, lda: kk, b: bm, bOffset: i * kk * p, ldb: p,
                                               c: c, cOffset: i * m * p, ldc: p)
            }
        })
        // The grad-weight GEMM shape: one long reduction over the batch vs one GEMM per image.
        list.append(Measurement(op: "sgemm", direction: "NT (grad weight) M=\(m) N=\(kk) K=\(n)", algorithm: "clblast", flops: flops) {
            try device.device.enqueueSgemm(.no, .yes, m: m, n: kk, k: n, a: c, lda: n, b: bm, ldb: n, beta: 1, c: a, ldc: kk)
        })
        list.append(Measurement(op: "sgemm", direction: "NT (grad weight) looped \(batch)x K=\(p)", algorithm: "clblast", flops: flops) {
            for i in 0..<batch {
                try device.device.enqueueSgemm(.no, .yes, m: m, n: kk, k: p, a: c, aOffset: i * m * p, lda: p, b: bm, bOffset: i * kk * p,
                                               ldb: p, beta: 1, c: a, ldc: kk)
            }
        })
        if k > 1 {
            let g = CLContext.ConvGeometry(channels: cin, height: size, width: size, kernelH: k, kernelW: k, padH: pad, padW: pad,
                                           strideH: 1, strideW: 1, dilationH: 1, dilationW: 1)
            let xb = try x.deviceBuffer()
            list.append(Measurement(op: "im2col", direction: "\(batch) images", algorithm: "clblast", flops: 0) {
                for i in 0..<batch {
                    try device.device.enqueueIm2col(g, im: xb, imOffset: i * cin * size * size, col: bm, colOffset: i * kk * p)
                }
            })
        }
        let times = try time(device, list)
        device.convWorkspace.winograd = savedWinograd
        for i in list.indices where list[i].algorithm == "chosen" {
            let choice = try device.convChoice(x: x, weight: w, params: params, list[i].direction == "forward" ? .forward : .backward)
            list[i].algorithm = "chosen: wide \(choice.path.rawValue) (\(choice.source.rawValue))"
        }
        let gflops = zip(list, times).map { m, ms in m.flops / (ms * 1e6) }
        let peak = gflops[list.firstIndex { $0.op == "sgemm" }!]
        return zip(zip(list, times), gflops).map { mt, g in
            ConvBenchRow(op: mt.0.op, shape: "\(name) \(batch)x\(cin)x\(size)x\(size)", direction: mt.0.direction, algorithm: mt.0.algorithm,
                         ms: mt.1, gflops: g, sgemmGflops: peak, device: device.name)
        }
    }
}
