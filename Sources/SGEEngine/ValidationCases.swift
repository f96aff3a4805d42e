import SGEReference
import SGETensor

/// The random cases of `Validator`, one method per op. Each draws an awkward shape and its inputs,
/// runs the op on both backends with identical float32 inputs and returns what to compare. Shapes
/// stay small so the plain-loop reference keeps `--cases 200` over all ops within minutes.
struct CaseRunner {
    let device: any Backend
    let reference: any Backend

    /// Awkward spatial sizes: 1, 2 and odd sizes up to 13 (7×13 among the pairs).
    static let sizes = [1, 2, 3, 5, 7, 9, 13]
    /// Exact comparison: (atol, rtol) = (0, 0).
    static let exact = (0.0, 0.0)

    func pick<T>(_ choices: [T], _ rng: inout SeededRNG) -> T { choices[rng.int(choices.count)] }

    /// The same values as a tensor on each backend.
    func pair(_ values: [Float], _ shape: Shape, _ label: String) throws -> (Tensor, Tensor) {
        (try device.tensor(values, shape, label: label), try reference.tensor(values, shape, label: label))
    }

    func compared(_ name: String, _ d: Tensor, _ r: Tensor, _ tol: (Double, Double)) throws -> Compared {
        guard d.shape == r.shape else {
            throw SGEError.shape("validate \(name): the device output has shape \(d.shape), the reference \(r.shape)")
        }
        return Compared(name: name, shape: r.shape, actual: try d.read(), expected: try r.read(), atol: tol.0, rtol: tol.1)
    }

    /// A random NCHW shape with batch 1...5, channels from `channels` and spatial sizes from `sizes`.
    func shape4(_ rng: inout SeededRNG, channels: [Int]) -> Shape {
        Shape([1 + rng.int(5), pick(channels, &rng), pick(Self.sizes, &rng), pick(Self.sizes, &rng)])
    }

    // MARK: SGE

    mutating func sge(_ rng: inout SeededRNG) throws -> CaseResult {
        let n = 1 + rng.int(5)
        let g: Int, k: Int
        switch rng.int(3) {
        case 0: (g, k) = (1, pick([1, 3, 7, 16, 33], &rng))          // G = 1
        case 1: (g, k) = (pick([2, 3, 7, 16, 33], &rng), 1)          // G = C
        default: (g, k) = (pick([2, 3, 4], &rng), pick([2, 3, 5], &rng))
        }
        let normalize = rng.int(4) != 0
        var h = pick(Self.sizes, &rng), w = pick(Self.sizes, &rng)
        while normalize && h * w < 2 { (h, w) = (pick(Self.sizes, &rng), pick(Self.sizes, &rng)) }
        let shape = Shape([n, g * k, h, w])
        let (xd, xr) = try pair(rng.normals(shape.count), shape, "x")
        let (wd, wr) = try pair(rng.normals(g), [g], "weight")
        let (bd, br) = try pair(rng.normals(g), [g], "bias")
        let fd = try device.sgeForward(xd, weight: wd, bias: bd, groups: g, normalize: normalize)
        let fr = try reference.sgeForward(xr, weight: wr, bias: br, groups: g, normalize: normalize)
        let tf = Tol.reduction(k * h * w, Tol.sge)
        var forward = [try compared("out", fd.out, fr.out, tf), try compared("means", fd.saved.means, fr.saved.means, tf),
                       try compared("gate", try device.sgeGate(xd, weight: wd, bias: bd, groups: g, normalize: normalize),
                                    try reference.sgeGate(xr, weight: wr, bias: br, groups: g, normalize: normalize), tf)]
        // (μ, σ) only mean something when normalising.
        if normalize { forward.append(try compared("stats", fd.saved.stats, fr.saved.stats, tf)) }

        let (god, gor) = try pair(rng.normals(shape.count), shape, "grad out")
        // Non-zero starting parameter gradients check that backward accumulates.
        let (gwd, gwr) = try pair(rng.normals(g), [g], "grad weight")
        let (gbd, gbr) = try pair(rng.normals(g), [g], "grad bias")
        let gxd = try device.sgeBackward(god, x: xd, weight: wd, bias: bd, groups: g, normalize: normalize, saved: fd.saved,
                                         gradWeight: gwd, gradBias: gbd)
        let gxr = try reference.sgeBackward(gor, x: xr, weight: wr, bias: br, groups: g, normalize: normalize, saved: fr.saved,
                                            gradWeight: gwr, gradBias: gbr)
        // Normalising divides by σ + ε: a slab whose similarities c barely vary (σ ≪ |c|) turns the
        // rounding noise of c - μ into gradient error (for M = 2 the true ∂t/∂c part even cancels to ~0,
        // leaving noise/σ). Scale the tolerance by the worst slab's condition κ = Σ_k|m_k|·max|x_k| / (σ+ε).
        let kappa = normalize ? try sgeCondition(xr, means: fr.saved.means, stats: fr.saved.stats, groups: g) : 1
        let base = Tol.reduction(k * h * w * n, Tol.sgeBackward)
        let tb = (base.0 * max(1, kappa), base.1 * max(1, kappa))
        let backward = [try compared("grad_x", gxd, gxr, tb), try compared("grad_weight", gwd, gwr, tb),
                        try compared("grad_bias", gbd, gbr, tb)]
        return CaseResult(shape: "x \(shape) G=\(g)\(normalize ? "" : " normalize=false")\(kappa > 1 ? String(format: " κ=%.3g", kappa) : "")",
                          directions: [("forward", forward), ("backward", backward)])
    }

    /// max over slabs of Σ_k |m_k|·max_i |x[k,i]| / (σ + ε): how much SGE's normalisation amplifies
    /// the rounding error of the similarities c (≤ 1 means no amplification beyond the reduction's).
    func sgeCondition(_ x: Tensor, means: Tensor, stats: Tensor, groups: Int) throws -> Double {
        let s = x.shape, xv = try x.read(), mv = try means.read(), sv = try stats.read()
        let k = s.c / groups, m = s.h * s.w
        var worst = 0.0
        for n in 0..<s.n {
            for g in 0..<groups {
                var scale = 0.0
                for ch in g * k..<(g + 1) * k {
                    let plane = xv[(n * s.c + ch) * m..<(n * s.c + ch + 1) * m]
                    scale += Double(abs(mv[n * s.c + ch])) * Double(plane.map(abs).max() ?? 0)
                }
                worst = max(worst, scale / (Double(sv[(n * groups + g) * 2 + 1]) + 1e-5))
            }
        }
        return worst
    }

    // MARK: Conv2d

    mutating func conv(_ rng: inout SeededRNG) throws -> CaseResult {
        let n = 1 + rng.int(3), cin = pick([1, 2, 3, 5, 7], &rng), cout = pick([1, 2, 5, 7, 9], &rng)
        var k = 1, s = 1, p = 0, d = 1, h = 1, w = 1
        // Redraw until the output is non-empty (the padded input covers the dilated kernel).
        repeat {
            (k, s, p, d) = (pick([1, 3, 5, 7], &rng), pick([1, 2], &rng), pick([0, 1, 2], &rng), pick([1, 2], &rng))
            (h, w) = (pick(Self.sizes, &rng), pick(Self.sizes, &rng))
        } while h + 2 * p - d * (k - 1) <= 0 || w + 2 * p - d * (k - 1) <= 0
        let oh = (h + 2 * p - d * (k - 1) - 1) / s + 1, ow = (w + 2 * p - d * (k - 1) - 1) / s + 1
        let hasBias = rng.int(4) != 0, needInputGrad = rng.int(5) != 0
        let xs = Shape([n, cin, h, w]), ws = Shape([cout, cin, k, k]), os = Shape([n, cout, oh, ow])
        let params = Conv2dParams(stride: s, padding: p, dilation: d)
        var (path, restorePath) = drawConvPath(&rng)
        defer { restorePath() }
        let (xd, xr) = try pair(rng.normals(xs.count), xs, "x")
        let (wd, wr) = try pair(rng.normals(ws.count), ws, "weight")
        var chosen = (forward: path.contains("winograd"), backward: path.contains("winograd"), gw: path.contains("winograd-full"))
        if let cl = device as? OpenCLBackend, path.isEmpty, cl.convWorkspace.algorithm == .wide {
            // The default: the paths chosen for this shape (`ConvChooser`), named so a failure reproduces.
            let f = try cl.convChoice(x: xd, weight: wd, params: params, .forward).path
            let b = try cl.convChoice(x: xd, weight: wd, params: params, .backward).path
            path = " [chosen: \(f.rawValue), \(b.rawValue)]"
            chosen = (f == .winograd || f == .winogradImplicit, b == .winograd || b == .winogradImplicit || b == .winogradFull, b == .winogradFull)
        } else if let cl = device as? OpenCLBackend, chosen.backward, cl.convWorkspace.winogradWeightGrad == true {
            chosen.gw = true
        }
        let biasPair = hasBias ? try pair(rng.normals(cout), [cout], "bias") : nil
        let od = try device.conv2dForward(xd, weight: wd, bias: biasPair?.0, params: params)
        let or = try reference.conv2dForward(xr, weight: wr, bias: biasPair?.1, params: params)
        // Winograd's transforms round sums of the terms' magnitudes, not of the result (Tol.winograd).
        let winogradShape = k == 3 && s == 1 && d == 1
        let forward = [try compared("out", od, or, Tol.reduction(cin * k * k, winogradShape && chosen.forward ? Tol.winograd : Tol.conv))]

        let (god, gor) = try pair(rng.normals(os.count), os, "grad out")
        let (gwd, gwr) = try pair(rng.normals(ws.count), ws, "grad weight")
        let gbPair = hasBias ? try pair(rng.normals(cout), [cout], "grad bias") : nil
        let gxd = try device.conv2dBackward(god, x: xd, weight: wd, params: params, gradWeight: gwd, gradBias: gbPair?.0,
                                            needInputGrad: needInputGrad)
        let gxr = try reference.conv2dBackward(gor, x: xr, weight: wr, params: params, gradWeight: gwr, gradBias: gbPair?.1,
                                               needInputGrad: needInputGrad)
        let tParam = Tol.reduction(n * oh * ow + 1, Tol.conv)
        // Winograd's weight gradient sums transformed products (Tol.winogradWeightGrad).
        let tWeight = winogradShape && chosen.gw ? Tol.reduction(n * oh * ow + 1, Tol.winogradWeightGrad) : tParam
        var backward = [try compared("grad_weight", gwd, gwr, tWeight)]
        if let (gbd, gbr) = gbPair { backward.append(try compared("grad_bias", gbd, gbr, tParam)) }
        if needInputGrad {
            guard let gxd, let gxr else { throw SGEError.shape("validate conv: needInputGrad = true but no grad_x returned") }
            backward.append(try compared("grad_x", gxd, gxr, Tol.reduction(cout * k * k, winogradShape && chosen.backward ? Tol.winograd : Tol.conv)))
        }
        let what = "x \(xs) w \(ws) s\(s) p\(p) d\(d)\(hasBias ? "" : " no bias")\(needInputGrad ? "" : " no grad_x")\(path)"
        return CaseResult(shape: what, directions: [("forward", forward), ("backward", backward)])
    }

    /// On an OpenCL device, the convolution path for one case: the default (by device and shape)
    /// or one forced algorithm or wide plan, so every path is validated; returns its description
    /// and what puts the workspace back.
    func drawConvPath(_ rng: inout SeededRNG) -> (String, () -> Void) {
        guard let cl = device as? OpenCLBackend else { return ("", {}) }
        let ws = cl.convWorkspace
        let saved = (ws.algorithm, ws.cpuKernels, ws.weightSliceImages, ws.inputGradPerImage, ws.winograd, ws.cpuImplicit)
        let savedGW = ws.winogradWeightGrad
        let restore = {
            (ws.algorithm, ws.cpuKernels, ws.weightSliceImages, ws.inputGradPerImage, ws.winograd, ws.cpuImplicit) = saved
            ws.winogradWeightGrad = savedGW
        }
        switch rng.int(7) {
        case 0: return ("", restore)
        case 6:
            // Winograd F(2×2, 3×3) where it applies (3×3, stride 1, dilation 1), the wide path elsewhere;
            // on CPU drivers half the time with Winograd's own weight gradient too (`.winogradFull`).
            let full = rng.int(2) == 0 && !cl.device.info.isGPU
            (ws.algorithm, ws.winograd, ws.winogradWeightGrad) = (.wide, true, full ? true : savedGW)
            return (full ? " [wide winograd-full]" : " [wide winograd]", restore)
        case 1: ws.algorithm = .im2colBatchedGemm
        case 2: ws.algorithm = .im2colGemm
        case 3:
            // conv_cpu.cl's kernels: the chunked columns, the implicit GEMM everywhere, or by shape.
            (ws.algorithm, ws.cpuKernels, ws.cpuImplicit) = (.wide, true, pick([false, true, nil], &rng))
        default:
            (ws.algorithm, ws.cpuKernels) = (.wide, false)
            (ws.weightSliceImages, ws.inputGradPerImage) = (pick([1, 2, Int.max], &rng), pick([true, false], &rng))
        }
        let plan = ws.algorithm == .wide && ws.cpuKernels == false
            ? ", gw slice \(ws.weightSliceImages! == Int.max ? "chunk" : "\(ws.weightSliceImages!)"), gi per image \(ws.inputGradPerImage!)" : ""
        let cpu = ws.cpuKernels == true ? " cpu kernels" + (ws.cpuImplicit.map { $0 ? " implicit" : " chunked" } ?? " implicit by shape") : ""
        return (" [\(ws.algorithm.rawValue)\(cpu)\(plan)]", restore)
    }

    // MARK: BatchNorm

    mutating func batchNorm(_ rng: inout SeededRNG) throws -> CaseResult {
        let training = rng.int(5) != 0
        var shape = shape4(&rng, channels: [1, 3, 7, 17, 33])
        // Training needs N·H·W ≥ 2 (the unbiased running variance divides by N·H·W - 1).
        while training && shape.n * shape.h * shape.w < 2 { shape = shape4(&rng, channels: [1, 3, 7, 17, 33]) }
        let c = Shape([shape.c])
        let momentum: Float = pick([0.1, 0.5], &rng)
        let (xd, xr) = try pair(rng.normals(shape.count, std: 2).map { $0 + 0.5 }, shape, "x")
        let (gd, gr) = try pair(rng.normals(shape.c), c, "gamma")
        let (bd, br) = try pair(rng.normals(shape.c), c, "beta")
        let (rmd, rmr) = try pair(rng.normals(shape.c), c, "running mean")
        let (rvd, rvr) = try pair(rng.uniforms(shape.c, 0.5, 2), c, "running var")
        // Half the cases fuse the ReLU that follows (BN+ReLU): max is exact, so the same tolerances.
        let relu = rng.int(2) == 0
        let fd = try device.batchNormForward(xd, gamma: gd, beta: bd, runningMean: rmd, runningVar: rvd, training: training,
                                             momentum: momentum, eps: 1e-5, relu: relu)
        let fr = try reference.batchNormForward(xr, gamma: gr, beta: br, runningMean: rmr, runningVar: rvr, training: training,
                                                momentum: momentum, eps: 1e-5, relu: relu)
        let l = shape.n * shape.h * shape.w
        let tf = Tol.reduction(l, Tol.batchNorm)
        let forward = [try compared("out", fd.out, fr.out, tf), try compared("mean", fd.saved.mean, fr.saved.mean, tf),
                       try compared("invstd", fd.saved.invstd, fr.saved.invstd, tf),
                       try compared("running_mean", rmd, rmr, tf), try compared("running_var", rvd, rvr, tf)]

        let (god, gor) = try pair(rng.normals(shape.count), shape, "grad out")
        let (ggd, ggr) = try pair(rng.normals(shape.c), c, "grad gamma")
        let (gbd, gbr) = try pair(rng.normals(shape.c), c, "grad beta")
        let gxd = try device.batchNormBackward(god, x: xd, gamma: gd, saved: fd.saved, gradGamma: ggd, gradBeta: gbd,
                                               reluOutput: relu ? fd.out : nil)
        let gxr = try reference.batchNormBackward(gor, x: xr, gamma: gr, saved: fr.saved, gradGamma: ggr, gradBeta: gbr,
                                                  reluOutput: relu ? fr.out : nil)
        let tb = Tol.reduction(l, Tol.batchNormBackward)
        let backward = [try compared("grad_x", gxd, gxr, tb), try compared("grad_gamma", ggd, ggr, tb),
                        try compared("grad_beta", gbd, gbr, tb)]
        return CaseResult(shape: "x \(shape) \(training ? "training" : "eval") momentum \(momentum)\(relu ? " +relu" : "")",
                          directions: [("forward", forward), ("backward", backward)])
    }

    // MARK: Elementwise

    mutating func relu(_ rng: inout SeededRNG) throws -> CaseResult {
        let shape = shape4(&rng, channels: [1, 3, 7, 17, 93])
        // Some exact zeros exercise the boundary of the mask (ReLU'(0) = 0, as PyTorch).
        let x = rng.normals(shape.count).enumerated().map { $0.offset % 17 == 3 ? 0 : $0.element }
        let (xd, xr) = try pair(x, shape, "x")
        let od = try device.reluForward(xd), or = try reference.reluForward(xr)
        let (god, gor) = try pair(rng.normals(shape.count), shape, "grad out")
        let gd = try device.reluBackward(out: od, gradOut: god), gr = try reference.reluBackward(out: or, gradOut: gor)
        return CaseResult(shape: "x \(shape)", directions: [("forward", [try compared("out", od, or, Self.exact)]),
                                                           ("backward", [try compared("grad_x", gd, gr, Self.exact)])])
    }

    /// Forward: a + b (correctly rounded on both sides: exact). Backward: the residual fork's gradient
    /// accumulation y ← αx + βy (`axpby`), tolerance 4 ulps of |αx| + |βy|.
    mutating func add(_ rng: inout SeededRNG) throws -> CaseResult {
        let shape = shape4(&rng, channels: [1, 3, 7, 17, 93])
        let (ad, ar) = try pair(rng.normals(shape.count), shape, "a")
        let (bd, br) = try pair(rng.normals(shape.count), shape, "b")
        let forward = [try compared("out", try device.add(ad, bd), try reference.add(ar, br), Self.exact),
                       try compared("add_relu", try device.addReLU(ad, bd), try reference.addReLU(ar, br), Self.exact)]
        let alpha = rng.uniform(-2, 2), beta = rng.uniform(-2, 2)
        let x = rng.normals(shape.count), y = rng.normals(shape.count)
        let (xd, xr) = try pair(x, shape, "grad x"), (yd, yr) = try pair(y, shape, "grad accumulator")
        try device.axpby(alpha: alpha, xd, beta: beta, yd)
        try reference.axpby(alpha: alpha, xr, beta: beta, yr)
        let scale = Double(abs(alpha)) * Double(x.map(abs).max() ?? 0) + Double(abs(beta)) * Double(y.map(abs).max() ?? 0)
        let backward = [try compared("axpby", yd, yr, (Tol.axpby * Tol.u * scale, Tol.axpby * Tol.u))]
        return CaseResult(shape: "x \(shape) α \(alpha) β \(beta)", directions: [("forward", forward), ("backward", backward)])
    }

    // MARK: Pooling

    /// A pooling geometry (kernel 2/3, stride 1/2, pad 0/1 ≤ k/2) and an input it gives a non-empty output for.
    func poolGeometry(_ rng: inout SeededRNG) -> (Shape, Int, Int, Int) {
        while true {
            let shape = shape4(&rng, channels: [1, 3, 7, 17])
            let (k, s, p) = (pick([2, 3], &rng), pick([1, 2], &rng), pick([0, 1], &rng))
            if shape.h + 2 * p >= k && shape.w + 2 * p >= k { return (shape, k, s, p) }
        }
    }

    mutating func maxPool(_ rng: inout SeededRNG) throws -> CaseResult {
        let (narrow, k, s, p) = poolGeometry(&rng)
        // Half the cases get rows wide enough for the CPU kernel's 16-output vectors (Kernels/pool_cpu.cl).
        let shape = rng.int(2) == 0 ? narrow : Shape([narrow.n, narrow.c, narrow.h, pick([37, 71], &rng)])
        let (xd, xr) = try pair(rng.normals(shape.count), shape, "x")
        let fd = try device.maxPoolForward(xd, kernel: k, stride: s, padding: p)
        let fr = try reference.maxPoolForward(xr, kernel: k, stride: s, padding: p)
        let forward = [try compared("out", fd.out, fr.out, Self.exact), try compared("argmax", fd.argmax, fr.argmax, Self.exact)]
        let (god, gor) = try pair(rng.normals(fr.out.count), fr.out.shape, "grad out")
        let gd = try device.maxPoolBackward(god, argmax: fd.argmax, inputShape: shape, kernel: k, stride: s, padding: p)
        let gr = try reference.maxPoolBackward(gor, argmax: fr.argmax, inputShape: shape, kernel: k, stride: s, padding: p)
        return CaseResult(shape: "x \(shape) k\(k) s\(s) p\(p)",
                          directions: [("forward", forward), ("backward", [try compared("grad_x", gd, gr, Tol.reduction(k * k, Tol.pool))])])
    }

    mutating func avgPool(_ rng: inout SeededRNG) throws -> CaseResult {
        let (shape, k, s, p) = poolGeometry(&rng)
        let t = Tol.reduction(k * k, Tol.pool)
        let (xd, xr) = try pair(rng.normals(shape.count), shape, "x")
        let od = try device.avgPoolForward(xd, kernel: k, stride: s, padding: p)
        let or = try reference.avgPoolForward(xr, kernel: k, stride: s, padding: p)
        let (god, gor) = try pair(rng.normals(or.count), or.shape, "grad out")
        let gd = try device.avgPoolBackward(god, inputShape: shape, kernel: k, stride: s, padding: p)
        let gr = try reference.avgPoolBackward(gor, inputShape: shape, kernel: k, stride: s, padding: p)
        return CaseResult(shape: "x \(shape) k\(k) s\(s) p\(p)",
                          directions: [("forward", [try compared("out", od, or, t)]), ("backward", [try compared("grad_x", gd, gr, t)])])
    }

    mutating func globalAvgPool(_ rng: inout SeededRNG) throws -> CaseResult {
        let shape = shape4(&rng, channels: [1, 3, 7, 17, 93])
        let (xd, xr) = try pair(rng.normals(shape.count), shape, "x")
        let od = try device.globalAvgPoolForward(xd), or = try reference.globalAvgPoolForward(xr)
        let (god, gor) = try pair(rng.normals(or.count), or.shape, "grad out")
        let gd = try device.globalAvgPoolBackward(god, inputShape: shape)
        let gr = try reference.globalAvgPoolBackward(gor, inputShape: shape)
        return CaseResult(shape: "x \(shape)",
                          directions: [("forward", [try compared("out", od, or, Tol.reduction(shape.h * shape.w, Tol.pool))]),
                                       ("backward", [try compared("grad_x", gd, gr, Tol.reduction(1, Tol.pool))])])
    }

    // MARK: Linear

    mutating func linear(_ rng: inout SeededRNG) throws -> CaseResult {
        let n = 1 + rng.int(5), inF = pick([1, 3, 7, 93, 130], &rng), outF = pick([1, 2, 10, 93], &rng)
        let hasBias = rng.int(4) != 0
        let xs = Shape([n, inF]), ws = Shape([outF, inF]), os = Shape([n, outF])
        let (xd, xr) = try pair(rng.normals(xs.count), xs, "x")
        let (wd, wr) = try pair(rng.normals(ws.count), ws, "weight")
        let biasPair = hasBias ? try pair(rng.normals(outF), [outF], "bias") : nil
        let od = try device.linearForward(xd, weight: wd, bias: biasPair?.0)
        let or = try reference.linearForward(xr, weight: wr, bias: biasPair?.1)
        let (god, gor) = try pair(rng.normals(os.count), os, "grad out")
        let (gwd, gwr) = try pair(rng.normals(ws.count), ws, "grad weight")
        let gbPair = hasBias ? try pair(rng.normals(outF), [outF], "grad bias") : nil
        let gxd = try device.linearBackward(god, x: xd, weight: wd, gradWeight: gwd, gradBias: gbPair?.0)
        let gxr = try reference.linearBackward(gor, x: xr, weight: wr, gradWeight: gwr, gradBias: gbPair?.1)
        let tParam = Tol.reduction(n + 1, Tol.linear)
        var backward = [try compared("grad_x", gxd, gxr, Tol.reduction(outF, Tol.linear)),
                        try compared("grad_weight", gwd, gwr, tParam)]
        if let (gbd, gbr) = gbPair { backward.append(try compared("grad_bias", gbd, gbr, tParam)) }
        return CaseResult(shape: "x \(xs) w \(ws)\(hasBias ? "" : " no bias")",
                          directions: [("forward", [try compared("out", od, or, Tol.reduction(inF, Tol.linear))]), ("backward", backward)])
    }

    // MARK: Softmax cross-entropy

    /// Forward: the loss and the number correct; backward: ∂loss/∂logits (computed by the same fused call).
    /// K on both sides of the kernels' switch (a work-item per row below 16), with float16 tails (33,
    /// 1001); N = 93 and 300 run many work-groups, the last of which sums the batch.
    mutating func loss(_ rng: inout SeededRNG) throws -> CaseResult {
        let n = pick([1 + rng.int(5), 1 + rng.int(5), 93, 300], &rng), k = pick([1, 2, 10, 16, 33, 1000, 1001], &rng)
        let std: Float = pick([1, 4], &rng)
        let (ld, lr) = try pair(rng.normals(n * k, std: std), [n, k], "logits")
        let (yd, yr) = try pair((0..<n).map { _ in Float(rng.int(k)) }, [n], "labels")
        let d = try device.softmaxCrossEntropy(ld, labels: yd), r = try reference.softmaxCrossEntropy(lr, labels: yr)
        let (atol, rtol) = Tol.reduction(k, Tol.loss)
        let forward = [try compared("loss", d.loss, r.loss, (atol, rtol)), try compared("correct", d.correct, r.correct, Self.exact)]
        // Each gradient is (softmax - onehot)/N: the absolute error shrinks with 1/N too.
        let backward = [try compared("grad_logits", d.gradLogits, r.gradLogits, (atol / Double(n), rtol))]
        return CaseResult(shape: "logits [\(n), \(k)] std \(std)", directions: [("forward", forward), ("backward", backward)])
    }

    // MARK: SGD

    mutating func sgd(_ rng: inout SeededRNG) throws -> CaseResult {
        let shape = rng.int(2) == 0 ? Shape([pick([1, 7, 93, 1000, 4097], &rng)]) : shape4(&rng, channels: [1, 3, 7, 17])
        let lr = rng.uniform(0.001, 0.5)
        let anyMomentum = rng.uniform(0, 0.99)
        let momentum: Float = pick([0, 0.9, anyMomentum], &rng)
        let dampening: Float = momentum > 0 ? pick([0, 0.1], &rng) : 0
        let weightDecay: Float = pick([0, 5e-4, 0.01], &rng)
        let nesterov = momentum > 0 && dampening == 0 && rng.int(2) == 0
        let firstStep = rng.int(3) == 0
        let p = rng.normals(shape.count), g = rng.normals(shape.count), b = rng.normals(shape.count)
        let (pd, pr) = try pair(p, shape, "param"), (gd, gr) = try pair(g, shape, "grad"), (bd, br) = try pair(b, shape, "momentum buffer")
        try device.sgdStep(pd, grad: gd, momentumBuffer: bd, lr: lr, momentum: momentum, dampening: dampening,
                           weightDecay: weightDecay, nesterov: nesterov, firstStep: firstStep)
        try reference.sgdStep(pr, grad: gr, momentumBuffer: br, lr: lr, momentum: momentum, dampening: dampening,
                              weightDecay: weightDecay, nesterov: nesterov, firstStep: firstStep)
        // A few multiply-adds whose terms are at most the largest input (times ≤ 2): cancellation
        // leaves an absolute error of a few ulps of that, whatever the result's size.
        let scale = 1 + Double([p, g, b].map { $0.map(abs).max() ?? 0 }.max() ?? 0)
        let t = (Tol.sgd * Tol.u * scale, Tol.sgd * Tol.u)
        let what = "param \(shape) lr \(lr) momentum \(momentum) dampening \(dampening) wd \(weightDecay)"
            + "\(nesterov ? " nesterov" : "")\(firstStep ? " first step" : "")"
        return CaseResult(shape: what, directions: [("update", [try compared("param", pd, pr, t),
                                                                try compared("momentum_buffer", bd, br, t)])])
    }
}
