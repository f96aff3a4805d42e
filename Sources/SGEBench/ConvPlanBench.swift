import Foundation
import SGEEngine
import SGEOpenCL
import SGETensor

/// One convolution shape for `sge bench conv --case` (and the plan comparison).
public struct ConvBenchCase: Sendable {
    public var cin, cout, kernel, stride, pad: Int

    /// Parses "CIN,COUT,K[,STRIDE[,PAD]]" (stride 1 and pad K/2 when left out).
    public init(parsing text: String) throws {
        let v = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard (3...5).contains(v.count), v.allSatisfy({ $0 != nil && $0! >= 0 }), v[0]! > 0, v[1]! > 0, v[2]! > 0,
              v.count < 4 || v[3]! > 0 else {
            throw SGEError.invalidArgument("--case \(text): expected CIN,COUT,K[,STRIDE[,PAD]] with positive channels, kernel and stride")
        }
        (cin, cout, kernel) = (v[0]!, v[1]!, v[2]!)
        stride = v.count > 3 ? v[3]! : 1
        pad = v.count > 4 ? v[4]! : kernel / 2
    }

    var name: String { "\(kernel)x\(kernel) \(cin)->\(cout)" + (stride > 1 ? " stride \(stride)" : "") + (pad > 0 ? " pad \(pad)" : "") }
}

extension ConvBenchmark {
    /// The wide algorithm at one shape, timed side by side (interleaved): forward and backward with
    /// conv_cpu.cl's kernels and with CLBlast (the shape's default plan, the grad input per image and
    /// as one GEMM, the grad weight alone per slice length: 1 = per image, "chunk" = one GEMM).
    public func runPlans(_ device: OpenCLBackend, _ c: ConvBenchCase) throws -> [ConvBenchRow] {
        var rng = SeededRNG(seed: 42)
        let params = Conv2dParams(stride: c.stride, padding: c.pad)
        let x = try device.tensor(rng.uniforms(batch * c.cin * size * size), [batch, c.cin, size, size], label: "x")
        let w = try device.tensor(rng.normals(c.cout * c.cin * c.kernel * c.kernel, std: 0.05), [c.cout, c.cin, c.kernel, c.kernel], label: "w")
        let o = (size + 2 * c.pad - c.kernel) / c.stride + 1
        guard o > 0 else { throw SGEError.invalidArgument("--case \(c.name) on \(size)×\(size) images gives an empty output") }
        let go = try device.tensor(rng.uniforms(batch * c.cout * o * o), [batch, c.cout, o, o], label: "grad out")
        let gw = device.zeros([c.cout, c.cin, c.kernel, c.kernel], label: "grad w")
        let flops = 2.0 * Double(batch * c.cout * c.cin * c.kernel * c.kernel * o * o)
        let ws = device.convWorkspace
        let saved = (ws.algorithm, ws.weightSliceImages, ws.inputGradPerImage, ws.cpuKernels, ws.winograd)
        let savedGW = (ws.cpuImplicit, ws.winogradWeightGrad)
        defer {
            (ws.algorithm, ws.weightSliceImages, ws.inputGradPerImage, ws.cpuKernels, ws.winograd) = saved
            (ws.cpuImplicit, ws.winogradWeightGrad) = savedGW
        }
        ws.algorithm = .wide
        func plan(_ slice: Int?, _ perImage: Bool?, cpu: Bool? = false, winograd: Bool? = false,
                  _ body: @escaping () throws -> Void) -> () throws -> Void {
            {
                (ws.weightSliceImages, ws.inputGradPerImage, ws.cpuKernels, ws.winograd) = (slice, perImage, cpu, winograd)
                (ws.cpuImplicit, ws.winogradWeightGrad) = savedGW
                try body()
            }
        }
        // A Winograd backward with its grad weight forced: .winograd (chunked columns), .winogradImplicit
        // or .winogradFull (Winograd's own; CPU drivers).
        func winogradPlan(_ path: ConvPath, _ body: @escaping () throws -> Void) -> () throws -> Void {
            {
                (ws.weightSliceImages, ws.inputGradPerImage, ws.cpuKernels, ws.winograd) = (nil, nil, !device.device.info.isGPU, true)
                (ws.cpuImplicit, ws.winogradWeightGrad) = (path == .winogradImplicit ? true : savedGW.0, path == .winogradFull)
                try body()
            }
        }
        let backward = { _ = try device.conv2dBackward(go, x: x, weight: w, params: params, gradWeight: gw, gradBias: nil, needInputGrad: true) }
        let gwOnly = { _ = try device.conv2dBackward(go, x: x, weight: w, params: params, gradWeight: gw, gradBias: nil, needInputGrad: false) }
        // The path chosen for this shape (timed once per device and stored), unforced; named below.
        var list: [Measurement] = [
            Measurement(direction: "forward", algorithm: "chosen", flops: flops,
                        body: plan(nil, nil, cpu: nil, winograd: nil) { _ = try device.conv2dForward(x, weight: w, bias: nil, params: params) }),
            Measurement(direction: "backward", algorithm: "chosen", flops: 2 * flops, body: plan(nil, nil, cpu: nil, winograd: nil, backward)),
        ]
        list += [Measurement(direction: "forward", algorithm: "wide clblast", flops: flops,
                                               body: plan(nil, nil) { _ = try device.conv2dForward(x, weight: w, bias: nil, params: params) })]
        list.append(Measurement(direction: "backward", algorithm: "wide clblast default plan", flops: 2 * flops, body: plan(nil, nil, backward)))
        list.append(Measurement(direction: "forward", algorithm: "wide cpu kernels", flops: flops,
                                body: plan(nil, nil, cpu: true) { _ = try device.conv2dForward(x, weight: w, bias: nil, params: params) }))
        list.append(Measurement(direction: "backward", algorithm: "wide cpu kernels", flops: 2 * flops, body: plan(nil, nil, cpu: true, backward)))
        list.append(Measurement(direction: "backward gw only", algorithm: "wide cpu kernels", flops: flops, body: plan(nil, nil, cpu: true, gwOnly)))
        // Winograd F(2×2, 3×3) where it applies: forward, and grad input with the cpu kernels' grad weight.
        if c.kernel == 3 && c.stride == 1 && c.pad <= 2 {
            list.append(Measurement(direction: "forward", algorithm: "winograd", flops: flops,
                                    body: plan(nil, nil, cpu: !device.device.info.isGPU, winograd: true) {
                                        _ = try device.conv2dForward(x, weight: w, bias: nil, params: params)
                                    }))
            let paths: [ConvPath] = device.device.info.isGPU ? [.winograd] : [.winograd, .winogradImplicit, .winogradFull]
            for p in paths {
                list.append(Measurement(direction: "backward", algorithm: p.rawValue, flops: 2 * flops, body: winogradPlan(p, backward)))
                list.append(Measurement(direction: "backward gw only", algorithm: p.rawValue, flops: flops, body: winogradPlan(p, gwOnly)))
            }
        }
        for perImage in [true, false] {
            list.append(Measurement(direction: "backward", algorithm: "wide clblast gi " + (perImage ? "per image" : "one GEMM"), flops: 2 * flops,
                                    body: plan(nil, perImage, backward)))
        }
        for slice in [1, 2, 4, 8, 16, 32, Int.max] where slice < batch || slice == Int.max {
            list.append(Measurement(direction: "backward gw only", algorithm: "wide clblast gw slice " + (slice == Int.max ? "chunk" : "\(slice)"),
                                    flops: flops, body: plan(slice, nil, gwOnly)))
        }
        // The plain CLBlast SGEMM of the forward's size (values in [-1, 1], no denormals): the
        // reference of fraction_of_sgemm.
        let (gm, gn, gk) = (c.cout, o * o * batch, c.cin * c.kernel * c.kernel)
        let (ga, gb, gc) = try (device.tensor(rng.uniforms(gm * gk), [gm * gk]).deviceBuffer(),
                                device.tensor(rng.uniforms(gk * gn), [gk * gn]).deviceBuffer(), device.tensor(rng.uniforms(gm * gn), [gm * gn]).deviceBuffer())
        list.append(Measurement(op: "sgemm", direction: "NN M=\(gm) N=\(gn) K=\(gk)", algorithm: "clblast", flops: flops) {
            try device.device.enqueueSgemm(.no, .no, m: gm, n: gn, k: gk, a: ga, lda: gk, b: gb, ldb: gn, c: gc, ldc: gn)
        })
        let times = try time(device, list)
        // Named after timing (the first run of an untimed shape may have timed its candidates), with
        // the knobs as the chosen rows ran (none forced).
        (ws.weightSliceImages, ws.inputGradPerImage, ws.cpuKernels, ws.winograd) = (nil, nil, nil, nil)
        (ws.cpuImplicit, ws.winogradWeightGrad) = savedGW
        let after = try (device.convChoice(x: x, weight: w, params: params, .forward), device.convChoice(x: x, weight: w, params: params, .backward))
        list[0].algorithm = "chosen: wide \(after.0.path.rawValue) (\(after.0.source.rawValue))"
        list[1].algorithm = "chosen: wide \(after.1.path.rawValue) (\(after.1.source.rawValue))"
        let shape = "\(c.name) \(batch)x\(c.cin)x\(size)x\(size)"
        let peak = flops / (times[times.count - 1] * 1e6)
        return zip(list, times).map { m, ms in
            ConvBenchRow(op: m.op, shape: shape, direction: m.direction, algorithm: m.algorithm, ms: ms, gflops: m.flops / (ms * 1e6),
                         sgemmGflops: peak, device: device.name)
        }
    }
}
