import SGEEngine
import SGETensor
import SGEDeviceTestSupport
import XCTest

/// BatchNorm, pooling and SGD: the OpenCL backend against the reference backend on awkward shapes,
/// and the argument checks both share (the cross-entropy's too; its kernels: LossTests).
final class OpsTests: XCTestCase {
    /// BatchNorm forward: float32 sums of up to ~300 O(1) values (mean, variance) against Double; the
    /// normalised outputs are O(1) with a few ulps of error each step, so 1e-5 absolute/relative is ample.
    let bnForwardTolerance = 1e-5
    /// BatchNorm backward subtracts two float32 channel sums from M·g: cancellation costs ~2 digits more.
    let bnBackwardTolerance = 1e-4
    /// Average pooling sums at most 9 floats in another order than the Double reference (measured
    /// ≤ 5e-7 absolute on sums up to ~4, i.e. ~1 ulp), so 1e-6 + 1e-6·|ref|. (Max pooling: MaxPoolTests.)
    let poolTolerance = 1e-6
    /// SGD: a handful of float multiply-adds against Double, values O(1).
    let sgdTolerance = 1e-6

    var rng = SeededRNG(seed: 7)
    let reference = ReferenceBackend()

    /// The same random values on both backends.
    func pair(_ device: OpenCLBackend, _ shape: Shape, std: Float = 1, mean: Float = 0, label: String) throws -> (Tensor, Tensor) {
        let v = rng.normals(shape.count, std: std).map { $0 + mean }
        return (try device.tensor(v, shape, label: label), try reference.tensor(v, shape, label: label))
    }

    // MARK: BatchNorm

    /// N·H·W = 91, 273 (more than one pass of a 256 work-group), 4 (H·W = 1), 3 (H·W = 1, C = 93); then
    /// shapes for the CPU-driver kernels (Kernels/batchnorm.cl), slices per channel S as on a 2-compute-unit
    /// PoCL: one work-item per channel with the 16-wide loop ([2, 9, 16, 16], S = 1), C = 1 with H·W = 1073
    /// (not a multiple of 8) in S = 8 slices crossing plane boundaries, H·W = 1 in S = 2 slices, N = 1 in
    /// S = 4 slices of one plane, and C = 5 larger than S = 2.
    let bnShapes: [Shape] = [[1, 3, 7, 13], [3, 17, 7, 13], [4, 93, 1, 1], [3, 5, 1, 1],
                             [2, 9, 16, 16], [3, 1, 37, 29], [700, 2, 1, 1], [1, 2, 33, 35], [2, 5, 15, 19]]

    /// The CPU-driver batchnorm kernels split channels into slices for the awkward shapes above.
    func testBatchNormCPUSlices() throws {
        let device = try testDevice()
        guard !device.device.info.isGPU else { throw XCTSkip("the sliced batchnorm kernels run on CPU drivers only") }
        XCTAssertEqual(device.batchNormCPUSlices(n: 128, c: 64, hw: 784), 1)
        XCTAssertEqual(device.batchNormCPUSlices(n: 1, c: 3, hw: 91), 1, "slices of at least 256 values")
        XCTAssertGreaterThan(device.batchNormCPUSlices(n: 3, c: 1, hw: 1073), 1)
        XCTAssertGreaterThan(device.batchNormCPUSlices(n: 1, c: 2, hw: 1155), 1)
    }

    func testBatchNormMatchesReference() throws {
        let device = try testDevice()
        for shape in bnShapes {
            let c = Shape([shape.c])
            let (xd, xr) = try pair(device, shape, std: 2, mean: 0.5, label: "x")
            let (gd, gr) = try pair(device, c, label: "gamma"), (bd, br) = try pair(device, c, label: "beta")
            let (rmd, rmr) = try pair(device, c, label: "running mean")
            let rvValues = rng.uniforms(shape.c, 0.5, 2)
            let rvd = try device.tensor(rvValues, c), rvr = try reference.tensor(rvValues, c)
            for training in [true, false] {
                let what = "\(shape) training=\(training)"
                let fd = try device.batchNormForward(xd, gamma: gd, beta: bd, runningMean: rmd, runningVar: rvd, training: training, momentum: 0.1, eps: 1e-5)
                let fr = try reference.batchNormForward(xr, gamma: gr, beta: br, runningMean: rmr, runningVar: rvr, training: training, momentum: 0.1, eps: 1e-5)
                try assertClose(fd.out, fr.out, atol: bnForwardTolerance, rtol: bnForwardTolerance, "\(what) out")
                try assertClose(fd.saved.mean, fr.saved.mean, atol: bnForwardTolerance, rtol: bnForwardTolerance, "\(what) mean")
                try assertClose(fd.saved.invstd, fr.saved.invstd, atol: bnForwardTolerance, rtol: bnForwardTolerance, "\(what) invstd")
                try assertClose(rmd, rmr, atol: bnForwardTolerance, rtol: bnForwardTolerance, "\(what) running mean")
                try assertClose(rvd, rvr, atol: bnForwardTolerance, rtol: bnForwardTolerance, "\(what) running var")

                let (god, gor) = try pair(device, shape, label: "grad out")
                // Non-zero starting gradients check that the parameter gradients accumulate.
                let ggd = try device.tensor([Float](repeating: 0.25, count: shape.c), c), ggr = try reference.tensor([Float](repeating: 0.25, count: shape.c), c)
                let gbd = try device.tensor([Float](repeating: -1, count: shape.c), c), gbr = try reference.tensor([Float](repeating: -1, count: shape.c), c)
                let gxd = try device.batchNormBackward(god, x: xd, gamma: gd, saved: fd.saved, gradGamma: ggd, gradBeta: gbd)
                let gxr = try reference.batchNormBackward(gor, x: xr, gamma: gr, saved: fr.saved, gradGamma: ggr, gradBeta: gbr)
                try assertClose(gxd, gxr, atol: bnBackwardTolerance, rtol: bnBackwardTolerance, "\(what) grad x")
                try assertClose(ggd, ggr, atol: bnBackwardTolerance, rtol: bnBackwardTolerance, "\(what) grad gamma")
                try assertClose(gbd, gbr, atol: bnBackwardTolerance, rtol: bnBackwardTolerance, "\(what) grad beta")
            }
        }
    }

    /// BatchNorm with the ReLU fused (forward max(y, 0); backward masks by the fused output): device
    /// against the reference at the same shapes and tolerances as BatchNorm alone, and bit for bit
    /// against the unfused kernels followed by relu_forward / preceded by relu_backward.
    func testBatchNormReLUFusedMatchesReferenceAndUnfused() throws {
        let device = try testDevice()
        for shape in bnShapes {
            let c = Shape([shape.c])
            let (xd, xr) = try pair(device, shape, std: 2, mean: 0.5, label: "x")
            let (gd, gr) = try pair(device, c, label: "gamma"), (bd, br) = try pair(device, c, label: "beta")
            for training in [true, false] {
                let what = "\(shape) training=\(training) fused relu"
                func stats(_ b: any Backend) throws -> (Tensor, Tensor) {
                    (try b.tensor([Float](repeating: 0.1, count: shape.c), c), try b.tensor([Float](repeating: 1.5, count: shape.c), c))
                }
                let (rmd, rvd) = try stats(device), (rmr, rvr) = try stats(reference), (rmu, rvu) = try stats(device)
                let fd = try device.batchNormForward(xd, gamma: gd, beta: bd, runningMean: rmd, runningVar: rvd, training: training,
                                                     momentum: 0.1, eps: 1e-5, relu: true)
                let fr = try reference.batchNormForward(xr, gamma: gr, beta: br, runningMean: rmr, runningVar: rvr, training: training,
                                                        momentum: 0.1, eps: 1e-5, relu: true)
                try assertClose(fd.out, fr.out, atol: bnForwardTolerance, rtol: bnForwardTolerance, "\(what) out")
                let fu = try device.batchNormForward(xd, gamma: gd, beta: bd, runningMean: rmu, runningVar: rvu, training: training,
                                                     momentum: 0.1, eps: 1e-5)
                let yu = try device.reluForward(fu.out)
                XCTAssertEqual(try fd.out.read(), try yu.read(), "\(what): fused forward differs from batchnorm + relu_forward")
                XCTAssertTrue(try fd.out.read().contains { $0 == 0 } , "\(what): the case should clip some values")

                let (god, gor) = try pair(device, shape, label: "grad out")
                let zeros = [Float](repeating: 0, count: shape.c)
                let (ggd, gbd) = (try device.tensor(zeros, c), try device.tensor(zeros, c))
                let (ggr, gbr) = (try reference.tensor(zeros, c), try reference.tensor(zeros, c))
                let (ggu, gbu) = (try device.tensor(zeros, c), try device.tensor(zeros, c))
                let gxd = try device.batchNormBackward(god, x: xd, gamma: gd, saved: fd.saved, gradGamma: ggd, gradBeta: gbd, reluOutput: fd.out)
                let gxr = try reference.batchNormBackward(gor, x: xr, gamma: gr, saved: fr.saved, gradGamma: ggr, gradBeta: gbr, reluOutput: fr.out)
                try assertClose(gxd, gxr, atol: bnBackwardTolerance, rtol: bnBackwardTolerance, "\(what) grad x")
                try assertClose(ggd, ggr, atol: bnBackwardTolerance, rtol: bnBackwardTolerance, "\(what) grad gamma")
                try assertClose(gbd, gbr, atol: bnBackwardTolerance, rtol: bnBackwardTolerance, "\(what) grad beta")
                let masked = try device.reluBackward(out: yu, gradOut: god)
                let gxu = try device.batchNormBackward(masked, x: xd, gamma: gd, saved: fu.saved, gradGamma: ggu, gradBeta: gbu)
                XCTAssertEqual(try gxd.read(), try gxu.read(), "\(what): fused backward differs from relu_backward + batchnorm_backward")
                XCTAssertEqual(try ggd.read(), try ggu.read(), "\(what): fused grad gamma differs")
            }
        }
    }

    // MARK: Pooling

    /// Average pooling (max pooling, both kernel variants: MaxPoolTests).
    func testAvgPoolingMatchesReference() throws {
        let device = try testDevice()
        let geometries = [(2, 1, 0), (2, 1, 1), (2, 2, 0), (2, 2, 1), (3, 1, 0), (3, 1, 1), (3, 2, 0), (3, 2, 1)]
        for shape: Shape in [[1, 3, 7, 13], [2, 17, 6, 5]] {
            let (xd, xr) = try pair(device, shape, label: "x")
            for (k, s, p) in geometries {
                let what = "\(shape) k\(k) s\(s) p\(p)"
                let outShape = try reference.avgPoolForward(xr, kernel: k, stride: s, padding: p).shape
                let (god, gor) = try pair(device, outShape, label: "grad out")
                try assertClose(try device.avgPoolForward(xd, kernel: k, stride: s, padding: p),
                                try reference.avgPoolForward(xr, kernel: k, stride: s, padding: p),
                                atol: poolTolerance, rtol: poolTolerance, "\(what) avg")
                try assertClose(try device.avgPoolBackward(god, inputShape: shape, kernel: k, stride: s, padding: p),
                                try reference.avgPoolBackward(gor, inputShape: shape, kernel: k, stride: s, padding: p),
                                atol: poolTolerance, rtol: poolTolerance, "\(what) avg grad")
            }
        }
    }

    func testGlobalAvgPoolMatchesReference() throws {
        let device = try testDevice()
        for shape: Shape in [[1, 93, 7, 13], [2, 3, 1, 1], [3, 17, 2, 1]] {
            let (xd, xr) = try pair(device, shape, label: "x")
            try assertClose(try device.globalAvgPoolForward(xd), try reference.globalAvgPoolForward(xr),
                            atol: poolTolerance, rtol: poolTolerance, "\(shape) forward")
            let (gd, gr) = try pair(device, [shape.n, shape.c], label: "grad out")
            try assertClose(try device.globalAvgPoolBackward(gd, inputShape: shape), try reference.globalAvgPoolBackward(gr, inputShape: shape),
                            atol: poolTolerance, rtol: poolTolerance, "\(shape) backward")
        }
    }

    // MARK: SGD

    func testSGDMatchesReferenceForAllOptions() throws {
        let device = try testDevice()
        let shape: Shape = [93]
        for momentum: Float in [0, 0.9] {
            for dampening: Float in [0, 0.3] {
                for wd: Float in [0, 5e-4] {
                    for nesterov in [false, true] {
                        let what = "momentum \(momentum) dampening \(dampening) wd \(wd) nesterov \(nesterov)"
                        let (pd, pr) = try pair(device, shape, label: "param")
                        let (bd, br) = try pair(device, shape, label: "momentum buffer")
                        if nesterov && (momentum == 0 || dampening != 0) {
                            XCTAssertThrowsError(try device.sgdStep(pd, grad: pd, momentumBuffer: bd, lr: 0.1, momentum: momentum, dampening: dampening,
                                                                    weightDecay: wd, nesterov: nesterov, firstStep: true), what)
                            continue
                        }
                        for firstStep in [true, false, false] {
                            let (gd, gr) = try pair(device, shape, label: "grad")
                            try device.sgdStep(pd, grad: gd, momentumBuffer: bd, lr: 0.1, momentum: momentum, dampening: dampening,
                                               weightDecay: wd, nesterov: nesterov, firstStep: firstStep)
                            try reference.sgdStep(pr, grad: gr, momentumBuffer: br, lr: 0.1, momentum: momentum, dampening: dampening,
                                                  weightDecay: wd, nesterov: nesterov, firstStep: firstStep)
                        }
                        try assertClose(pd, pr, atol: sgdTolerance, rtol: sgdTolerance, "\(what) param")
                        try assertClose(bd, br, atol: sgdTolerance, rtol: sgdTolerance, "\(what) buffer")
                    }
                }
            }
        }
    }

    /// The multi-tensor step: 17 tensors (two launches of 16 slots) of awkward sizes, each with its
    /// own weight decay, for every momentum option; the gradients must come back zero. The
    /// arithmetic per element is that of sgd_step, so the tolerance is the same.
    func testSGDMultiMatchesReferenceAndZeroesGradients() throws {
        let device = try testDevice()
        let sizes = [1, 7, 93, 1000, 4097, 3, 64, 65, 1, 2, 17, 255, 256, 257, 31, 5, 9]
        for (momentum, dampening, nesterov) in [(Float(0), Float(0), false), (0.9, 0, false), (0.9, 0.3, false), (0.9, 0, true)] {
            var dev: [SGDEntry] = [], ref: [SGDEntry] = []
            for (k, n) in sizes.enumerated() {
                let (pd, pr) = try pair(device, [n], label: "param \(k)")
                let (gd, gr) = try pair(device, [n], label: "grad \(k)")
                let (bd, br) = try pair(device, [n], label: "buffer \(k)")
                let wd: Float = k % 3 == 0 ? 0 : (k % 3 == 1 ? 5e-4 : 0.01)
                dev.append(SGDEntry(param: pd, grad: gd, momentumBuffer: bd, weightDecay: wd))
                ref.append(SGDEntry(param: pr, grad: gr, momentumBuffer: br, weightDecay: wd))
            }
            for firstStep in [true, false] {
                // Fresh gradients each step (the previous step zeroed them).
                for (d, r) in zip(dev, ref) {
                    let g = rng.normals(d.grad.count)
                    try d.grad.write(g)
                    try r.grad.write(g)
                }
                try device.sgdStepMulti(dev, lr: 0.1, momentum: momentum, dampening: dampening, nesterov: nesterov, firstStep: firstStep)
                try reference.sgdStepMulti(ref, lr: 0.1, momentum: momentum, dampening: dampening, nesterov: nesterov, firstStep: firstStep)
            }
            let what = "momentum \(momentum) dampening \(dampening) nesterov \(nesterov)"
            for (d, r) in zip(dev, ref) {
                try assertClose(d.param, r.param, atol: sgdTolerance, rtol: sgdTolerance, "\(what) \(d.param.label)")
                try assertClose(d.momentumBuffer, r.momentumBuffer, atol: sgdTolerance, rtol: sgdTolerance, "\(what) \(d.momentumBuffer.label)")
                XCTAssertEqual(try d.grad.read(), [Float](repeating: 0, count: d.grad.count), "\(what) \(d.grad.label) not zeroed")
            }
        }
    }

    /// The packed step (flat buffers, one launch) equals the per-tensor multi step bit for bit, for
    /// 17 tensors of awkward sizes in three weight-decay groups: packing keeps every value, the
    /// alignment gaps do not leak into the tensors, gradients come back zero, and a tensor swapped
    /// out of the pack (as a checkpoint load without a momentum buffer does) makes a new pack.
    func testSGDPackedEqualsMultiStep() throws {
        let device = try testDevice()
        let sizes = [1, 7, 93, 1000, 4097, 3, 64, 65, 1, 2, 17, 255, 256, 257, 31, 5, 9]
        var packed: [SGDEntry] = [], plain: [SGDEntry] = []
        for (k, n) in sizes.enumerated() {
            let p = rng.normals(n), b = rng.normals(n)
            let wd: Float = k % 3 == 0 ? 0 : (k % 3 == 1 ? 5e-4 : 0.01)
            packed.append(SGDEntry(param: try device.tensor(p, [n]), grad: device.zeros([n]), momentumBuffer: try device.tensor(b, [n]), weightDecay: wd))
            plain.append(SGDEntry(param: try device.tensor(p, [n]), grad: device.zeros([n]), momentumBuffer: try device.tensor(b, [n]), weightDecay: wd))
        }
        let before = try packed.map { try $0.param.read() }
        let pack = try XCTUnwrap(try device.packSGD(packed))
        XCTAssertEqual(pack.launches, 1)
        XCTAssertTrue(pack.matches(packed))
        XCTAssertEqual(try packed.map { try $0.param.read() }, before, "packing must keep the values")
        for firstStep in [true, false, false] {
            for (a, b) in zip(packed, plain) {
                let g = rng.normals(a.grad.count)
                try a.grad.write(g)
                try b.grad.write(g)
            }
            try device.sgdStepPacked(pack, lr: 0.1, momentum: 0.9, dampening: 0, nesterov: false, firstStep: firstStep)
            try device.sgdStepMulti(plain, lr: 0.1, momentum: 0.9, dampening: 0, nesterov: false, firstStep: firstStep)
        }
        for (a, b) in zip(packed, plain) {
            XCTAssertEqual(try a.param.read(), try b.param.read(), "\(a.param.count) values")
            XCTAssertEqual(try a.momentumBuffer.read(), try b.momentumBuffer.read())
            XCTAssertEqual(try a.grad.read(), [Float](repeating: 0, count: a.grad.count))
        }
        var swapped = packed
        swapped[3].momentumBuffer = try device.tensor(rng.normals(sizes[3]), [sizes[3]])
        XCTAssertFalse(pack.matches(swapped))
        XCTAssertNil(try reference.packSGD(plain), "the reference backend does not pack")
    }

    /// The multi-tensor step equals one sgd_step per tensor bit for bit (same arithmetic, same order).
    func testSGDMultiEqualsSingleSteps() throws {
        let device = try testDevice()
        let sizes = [93, 1, 4097]
        var multi: [SGDEntry] = [], single: [SGDEntry] = []
        for n in sizes {
            let p = rng.normals(n), g = rng.normals(n), b = rng.normals(n)
            multi.append(SGDEntry(param: try device.tensor(p, [n]), grad: try device.tensor(g, [n]), momentumBuffer: try device.tensor(b, [n]), weightDecay: 5e-4))
            single.append(SGDEntry(param: try device.tensor(p, [n]), grad: try device.tensor(g, [n]), momentumBuffer: try device.tensor(b, [n]), weightDecay: 5e-4))
        }
        try device.sgdStepMulti(multi, lr: 0.05, momentum: 0.9, dampening: 0, nesterov: true, firstStep: false)
        for e in single {
            try device.sgdStep(e.param, grad: e.grad, momentumBuffer: e.momentumBuffer, lr: 0.05, momentum: 0.9, dampening: 0,
                               weightDecay: e.weightDecay, nesterov: true, firstStep: false)
        }
        for (m, s) in zip(multi, single) {
            XCTAssertEqual(try m.param.read(), try s.param.read())
            XCTAssertEqual(try m.momentumBuffer.read(), try s.momentumBuffer.read())
        }
    }

    // MARK: Argument checks (reference backend: no device needed; both backends share the checks)

    func assertShapeError(_ what: String, _ body: () throws -> Void, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), what, file: file, line: line) { error in
            guard let e = error as? SGEError else { return XCTFail("\(what): \(error)", file: file, line: line) }
            switch e {
            case .shape(let m), .invalidArgument(let m): XCTAssertFalse(m.isEmpty, file: file, line: line)
            default: XCTFail("\(what): \(e)", file: file, line: line)
            }
        }
    }

    func testArgumentChecks() throws {
        let r = reference
        let x = r.zeros([2, 3, 4, 4], label: "x")
        let c3 = r.zeros([3]), c4 = r.zeros([4], label: "gamma4")
        assertShapeError("BN gamma shape") { _ = try r.batchNormForward(x, gamma: c4, beta: c3, runningMean: c3, runningVar: c3, training: true, momentum: 0.1, eps: 1e-5) }
        assertShapeError("BN rank") { _ = try r.batchNormForward(r.zeros([2, 3]), gamma: c3, beta: c3, runningMean: c3, runningVar: c3, training: true, momentum: 0.1, eps: 1e-5) }
        assertShapeError("BN one value per channel") { _ = try r.batchNormForward(r.zeros([1, 3, 1, 1]), gamma: c3, beta: c3, runningMean: c3, runningVar: c3, training: true, momentum: 0.1, eps: 1e-5) }
        assertShapeError("BN eps") { _ = try r.batchNormForward(x, gamma: c3, beta: c3, runningMean: c3, runningVar: c3, training: true, momentum: 0.1, eps: 0) }
        assertShapeError("pool output empty") { _ = try r.maxPoolForward(r.zeros([1, 1, 2, 2]), kernel: 3, stride: 1, padding: 0) }
        assertShapeError("pool padding > k/2") { _ = try r.avgPoolForward(x, kernel: 2, stride: 1, padding: 2) }
        assertShapeError("pool stride 0") { _ = try r.avgPoolForward(x, kernel: 2, stride: 0, padding: 0) }
        assertShapeError("pool grad shape") { _ = try r.avgPoolBackward(r.zeros([2, 3, 3, 3]), inputShape: [2, 3, 4, 4], kernel: 2, stride: 2, padding: 0) }
        assertShapeError("global pool grad shape") { _ = try r.globalAvgPoolBackward(r.zeros([2, 4]), inputShape: [2, 3, 4, 4]) }
        assertShapeError("labels count") { _ = try r.softmaxCrossEntropy(r.zeros([4, 10]), labels: r.zeros([3])) }
        assertShapeError("momentum buffer shape") {
            try r.sgdStep(r.zeros([5]), grad: r.zeros([5]), momentumBuffer: r.zeros([6], label: "buf"), lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 0, nesterov: false, firstStep: true)
        }
        assertShapeError("negative lr") {
            try r.sgdStep(r.zeros([5]), grad: r.zeros([5]), momentumBuffer: r.zeros([5]), lr: -1, momentum: 0.9, dampening: 0, weightDecay: 0, nesterov: false, firstStep: true)
        }
        // A message names the op and the shapes.
        do {
            _ = try r.softmaxCrossEntropy(r.zeros([4, 10], label: "logits"), labels: r.zeros([3], label: "labels"))
        } catch SGEError.shape(let m) {
            XCTAssertTrue(m.contains("softmaxCrossEntropy") && m.contains("[3]") && m.contains("[4, 10]"), m)
        }
    }
}
