import SGEEngine
import SGEOpenCL
import SGETensor
import SGEDeviceTestSupport
import XCTest

/// OpenCL Conv2d and Linear (CLBlast im2col/col2im/GEMM + conv.cl) against the reference backend.
final class ConvTests: XCTestCase {
    /// Float32 GEMM against the Double reference: each output sums at most 17·7·7 = 833 products of
    /// values in [-1, 1]; float32 summation error grows like sqrt(terms)·eps·Σ|terms| ≲ 30·6e-8·833
    /// ≈ 1.5e-3 in the very worst case, typically ~1e-5. 2e-4 absolute + 1e-4 relative is loose
    /// enough for blocked summation order and tight enough that a dropped or doubled tap (error
    /// ~0.1 or more) fails.
    let atol = 2e-4
    let rtol = 1e-4

    private func random(_ shape: Shape, seed: UInt64) -> [Float] {
        var rng = SeededRNG(seed: seed)
        return rng.uniforms(shape.count)
    }

    /// Runs forward and backward of one convolution on `device` and the reference and compares
    /// the output, grad input, grad weight and grad bias (the gradients start non-zero so the
    /// test also checks that they accumulate).
    private func checkConv(_ device: OpenCLBackend, x xs: Shape, cout: Int, kernel: (Int, Int), params: Conv2dParams,
                           bias useBias: Bool = true, what: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let ref = ReferenceBackend()
        let ws: Shape = [cout, xs.c, kernel.0, kernel.1]
        let oh = (xs.h + 2 * params.padH - params.dilationH * (kernel.0 - 1) - 1) / params.strideH + 1
        let ow = (xs.w + 2 * params.padW - params.dilationW * (kernel.1 - 1) - 1) / params.strideW + 1
        let os: Shape = [xs.n, cout, oh, ow]
        let (x, w, b, go) = (random(xs, seed: 1), random(ws, seed: 2), random([cout], seed: 3), random(os, seed: 4))
        let (gw0, gb0) = (random(ws, seed: 5), random([cout], seed: 6))
        let label = "\(what): x \(xs), w \(ws), \(params)"

        var results: [[Float]] = []
        for backend in [device as any Backend, ref as any Backend] {
            let (xt, wt) = (try backend.tensor(x, xs, label: "x"), try backend.tensor(w, ws, label: "w"))
            let bt = useBias ? try backend.tensor(b, [cout], label: "b") : nil
            let out = try backend.conv2dForward(xt, weight: wt, bias: bt, params: params)
            let gwt = try backend.tensor(gw0, ws, label: "gw"), gbt = try backend.tensor(gb0, [cout], label: "gb")
            let gx = try backend.conv2dBackward(try backend.tensor(go, os, label: "go"), x: xt, weight: wt, params: params,
                                                gradWeight: gwt, gradBias: useBias ? gbt : nil, needInputGrad: true)
            XCTAssertEqual(out.shape, os, label, file: file, line: line)
            XCTAssertEqual(gx?.shape, xs, label, file: file, line: line)
            results += [try out.read(), try gx!.read(), try gwt.read(), try gbt.read()]
        }
        for (i, name) in ["output", "grad input", "grad weight", "grad bias"].enumerated() {
            assertClose(results[i], results[i + 4], atol: atol, rtol: rtol, "\(label): \(name)", file: file, line: line)
        }
    }

    func testConvStridePadKernelGrid() throws {
        let device = try testDevice()
        // Odd spatial size, channels not multiples of any work-group size.
        let xs: Shape = [2, 3, 9, 7]
        for k in [1, 3, 7] {
            for stride in [1, 2] {
                for pad in [0, 1] {
                    try checkConv(device, x: xs, cout: 5, kernel: (k, k), params: Conv2dParams(stride: stride, padding: pad), what: "grid")
                }
            }
        }
    }

    func testConvAwkwardShapes() throws {
        let device = try testDevice()
        for algorithm in [ConvAlgorithm.im2colBatchedGemm, .im2colGemm] {
            device.convWorkspace.algorithm = algorithm
            try awkwardShapes(device, "\(algorithm)")
        }
        // The per-image algorithms use our col2im where CLBlast's is wrong: its per-element (GPU) form too.
        device.convWorkspace.algorithm = .im2colBatchedGemm
        device.convWorkspace.im2colPerElement = true
        try awkwardShapes(device, "im2colBatchedGemm, col2im per element")
        device.convWorkspace.im2colPerElement = nil
        // The wide layout with both backward forms: per-image batched GEMMs and one GEMM per chunk,
        // and with both im2col/col2im kernels (per element, the GPU default; blocks, the CPU default).
        // CLBlast's GEMMs (the GPU default); conv_cpu.cl's kernels are tested in testConvWideCPUKernels.
        device.convWorkspace.algorithm = .wide
        device.convWorkspace.cpuKernels = false
        let saved = (ConvWorkspace.perImageMinPlane, device.convWorkspace.im2colPerElement)
        defer { (ConvWorkspace.perImageMinPlane, device.convWorkspace.im2colPerElement, device.convWorkspace.cpuKernels) = (saved.0, saved.1, nil) }
        for perElement in [true, false] {
            device.convWorkspace.im2colPerElement = perElement
            for minPlane in [1, 1 << 30] {
                ConvWorkspace.perImageMinPlane = minPlane
                try awkwardShapes(device, "wide, im2col per element \(perElement), per-image from plane \(minPlane)")
            }
            try checkConv(device, x: [2, 3, 9, 7], cout: 5, kernel: (7, 7), params: Conv2dParams(stride: 2, padding: 3),
                          what: "wide 7x7 stride 2 pad 3, im2col per element \(perElement)")
            try checkConv(device, x: [1, 2, 5, 4], cout: 3, kernel: (3, 3), params: Conv2dParams(stride: 3, padding: 2),
                          what: "wide stride 3 pad 2, im2col per element \(perElement)")
        }
    }

    /// The wide algorithm with conv_cpu.cl's kernels over chunks of im2col columns (`cpuImplicit = false`), forced on any device:
    /// the awkward shapes plus C = 1 with stride 2 and no padding, a pointwise batch of 1 and a
    /// batch of 7 with odd planes. With a cache budget of 1 float every reduction piece is 16
    /// positions (K longer than one split: many partial products summed by accumulate_partials) and
    /// the small-matrix kernel runs 16-position chunks with scalar tails.
    func testConvWideCPUKernels() throws {
        let device = try testDevice()
        let ws = device.convWorkspace
        let saved = (ws.algorithm, ws.cpuKernels, ws.cpuCacheFloats, ws.columnLimitBytes, ws.cpuImplicit)
        defer { (ws.algorithm, ws.cpuKernels, ws.cpuCacheFloats, ws.columnLimitBytes, ws.cpuImplicit) = saved }
        (ws.algorithm, ws.cpuKernels, ws.cpuImplicit) = (.wide, true, false)
        for budget in [128 << 10, 1] {
            ws.cpuCacheFloats = budget
            try awkwardShapes(device, "cpu kernels, cache \(budget) floats")
            try checkConv(device, x: [3, 1, 23, 19], cout: 1, kernel: (3, 3), params: Conv2dParams(stride: 2, padding: 0),
                          what: "cpu kernels C = 1 stride 2, cache \(budget)")
            try checkConv(device, x: [1, 5, 21, 17], cout: 3, kernel: (1, 1), params: Conv2dParams(), bias: false,
                          what: "cpu kernels pointwise batch 1, cache \(budget)")
            try checkConv(device, x: [7, 6, 9, 11], cout: 9, kernel: (3, 3), params: Conv2dParams(stride: 1, padding: 1),
                          what: "cpu kernels batch 7, cache \(budget)")
        }
        // Chunks of 2 images (5000-byte column cap, as in testConvForcedChunkingAndAlgorithms); then
        // one image per chunk whose six 16-position pieces of 9×54 partials (11.7 KB) exceed the cap,
        // so the pieces are merged (3, then 2) to fit.
        ws.columnLimitBytes = 5000
        try checkConv(device, x: [5, 3, 9, 7], cout: 4, kernel: (3, 3), params: Conv2dParams(stride: 2, padding: 1), what: "cpu kernels chunked")
        try checkConv(device, x: [4, 6, 9, 9], cout: 9, kernel: (3, 3), params: Conv2dParams(stride: 1, padding: 1),
                      what: "cpu kernels, partials merged under the cap")
    }

    /// The implicit GEMM (conv_implicit_cpu.cl) forced wherever it runs (`cpuImplicit = true`, so
    /// the input gradient at stride 2 takes the gather too), against the reference: the awkward
    /// shapes; C = 1 → K = 1 at stride 2 without padding; batch 1 with a 1×1 plane; the 1×1 stride-2
    /// shortcut with 17 → 20 channels; 5×5 stride 2; 19 → 17 channels on 30×29 planes (several
    /// chunks per plane: 3 at the default budget, 55 at 1 float, where every local block is 16
    /// positions and the weight gradient's pieces too). Then the local-memory caps (2 MiB on PoCL):
    /// 400 channels at 7×7 (groups of images shrunk to fit) and 20×20 (pieces split to fit), and 669
    /// channels under a 7×7 kernel, whose 16-position block (32781 rows) fits nowhere, so every
    /// direction falls back to the chunked columns. Last the default choice (nil): forward and weight
    /// gradient implicit, the stride-2 input gradient chunked. The forward also equals the chunked
    /// path's bit for bit.
    func testConvImplicitCPUKernels() throws {
        let device = try testDevice()
        let ws = device.convWorkspace
        let saved = (ws.algorithm, ws.cpuKernels, ws.cpuImplicit, ws.cpuCacheFloats)
        defer { (ws.algorithm, ws.cpuKernels, ws.cpuImplicit, ws.cpuCacheFloats) = saved }
        (ws.algorithm, ws.cpuKernels, ws.cpuImplicit) = (.wide, true, true)
        for budget in [128 << 10, 1] {
            ws.cpuCacheFloats = budget
            let what = "implicit, cache \(budget) floats"
            try awkwardShapes(device, what)
            try checkConv(device, x: [3, 1, 23, 19], cout: 1, kernel: (3, 3), params: Conv2dParams(stride: 2, padding: 0), what: "C = K = 1 stride 2, \(what)")
            try checkConv(device, x: [1, 5, 1, 1], cout: 3, kernel: (3, 3), params: Conv2dParams(stride: 1, padding: 1), bias: false,
                          what: "batch 1, 1x1 plane, \(what)")
            try checkConv(device, x: [2, 17, 9, 11], cout: 20, kernel: (1, 1), params: Conv2dParams(stride: 2, padding: 0),
                          what: "1x1 stride 2, \(what)")
            try checkConv(device, x: [2, 3, 13, 10], cout: 4, kernel: (5, 5), params: Conv2dParams(stride: 2, padding: 2), what: "5x5 stride 2, \(what)")
            try checkConv(device, x: [3, 19, 30, 29], cout: 17, kernel: (3, 3), params: Conv2dParams(stride: 1, padding: 1),
                          what: "several chunks per plane, \(what)")
        }
        ws.cpuCacheFloats = 128 << 10
        try checkConv(device, x: [2, 400, 7, 7], cout: 3, kernel: (3, 3), params: Conv2dParams(stride: 1, padding: 1), what: "implicit, groups shrunk")
        try checkConv(device, x: [2, 400, 20, 20], cout: 3, kernel: (3, 3), params: Conv2dParams(stride: 1, padding: 1), what: "implicit, pieces split")
        try checkConv(device, x: [1, 669, 1, 1], cout: 2, kernel: (7, 7), params: Conv2dParams(stride: 1, padding: 3), what: "implicit, no fit")
        // The forward is the chunked path's arithmetic (same FMAs in the same order per output): bit-identical.
        for (xs, cout, k, params) in [(Shape([3, 19, 30, 29]), 17, 3, Conv2dParams(stride: 1, padding: 1)),
                                      (Shape([2, 3, 13, 10]), 4, 5, Conv2dParams(stride: 2, padding: 2))] {
            let x = try device.tensor(random(xs, seed: 31), xs, label: "x")
            let w = try device.tensor(random([cout, xs.c, k, k], seed: 32), [cout, xs.c, k, k], label: "w")
            let b = try device.tensor(random([cout], seed: 33), [cout], label: "b")
            let outs = try [true, false].map { implicit in
                ws.cpuImplicit = implicit
                return try device.conv2dForward(x, weight: w, bias: b, params: params).read()
            }
            XCTAssertEqual(outs[0], outs[1], "implicit vs chunked forward, x \(xs), \(params): not bit-identical")
        }
        ws.cpuImplicit = nil
        try checkConv(device, x: [5, 3, 9, 7], cout: 4, kernel: (3, 3), params: Conv2dParams(stride: 2, padding: 1), what: "implicit by default, stride 2")
        try checkConv(device, x: [4, 6, 9, 9], cout: 9, kernel: (3, 3), params: Conv2dParams(stride: 1, padding: 1), what: "implicit by default")
    }

    /// The wide algorithm's CLBlast backward plans, each forced: grad weight per image, in slices of
    /// 2 and 3 images (split-K over the wide copy, with a shorter last slice at batch 7) and as one
    /// GEMM; grad input per image and as one GEMM.
    func testConvWideBackwardPlans() throws {
        let device = try testDevice()
        let ws = device.convWorkspace
        let saved = (ws.algorithm, ws.cpuKernels, ws.weightSliceImages, ws.inputGradPerImage)
        defer { (ws.algorithm, ws.cpuKernels, ws.weightSliceImages, ws.inputGradPerImage) = saved }
        (ws.algorithm, ws.cpuKernels) = (.wide, false)
        for (slice, perImage) in [(1, true), (1, false), (2, false), (3, true), (Int.max, true), (Int.max, false)] {
            (ws.weightSliceImages, ws.inputGradPerImage) = (slice, perImage)
            let what = "gw slice \(slice), gi per image \(perImage)"
            try awkwardShapes(device, what)
            try checkConv(device, x: [7, 2, 9, 7], cout: 3, kernel: (3, 3), params: Conv2dParams(stride: 1, padding: 1), what: "batch 7, \(what)")
            try checkConv(device, x: [7, 4, 6, 5], cout: 3, kernel: (1, 1), params: Conv2dParams(), what: "pointwise batch 7, \(what)")
        }
    }

    /// The device backward against central differences of the device forward, for each wide path.
    /// L = Σ r ⊙ conv(x, w) is linear in x and in w, so (L(x + h) − L(x − h)) / 2h is exact but for
    /// float32 rounding: the ~100 outputs here are ≲ 5 in size, so L carries ≲ 100·5·6e-8 ≈ 3e-5 of
    /// rounding, 6e-5 in the quotient with h = 0.25; 1e-3 absolute (+ 1e-3 relative) is far above
    /// that and far below what a dropped or misplaced tap costs (≥ 0.05 with values in [-1, 1]).
    func testConvBackwardFiniteDifferences() throws {
        let device = try testDevice()
        let ws = device.convWorkspace
        let saved = (ws.algorithm, ws.cpuKernels, ws.weightSliceImages, ws.inputGradPerImage, ws.cpuCacheFloats, ws.cpuImplicit)
        defer { (ws.algorithm, ws.cpuKernels, ws.weightSliceImages, ws.inputGradPerImage, ws.cpuCacheFloats, ws.cpuImplicit) = saved }
        ws.algorithm = .wide
        let cases: [(Shape, Int, Int, Conv2dParams)] = [([2, 1, 7, 6], 3, 3, Conv2dParams(stride: 2, padding: 0)),
                                                         ([2, 3, 5, 4], 2, 1, Conv2dParams()),
                                                         ([1, 2, 5, 5], 2, 3, Conv2dParams(stride: 1, padding: 1))]
        let paths: [(String, Bool, Bool, Int?, Bool?)] = [("cpu kernels, chunked columns", true, false, nil, nil),
                                                          ("cpu kernels, implicit", true, true, nil, nil),
                                                          ("clblast per image", false, false, 1, true),
                                                          ("clblast split 2 / one GEMM", false, false, 2, false)]
        for (name, cpu, implicit, slice, perImage) in paths {
            (ws.cpuKernels, ws.cpuImplicit, ws.weightSliceImages, ws.inputGradPerImage, ws.cpuCacheFloats) = (cpu, implicit, slice, perImage, 1)
            for (xs, cout, k, params) in cases {
                let ws4: Shape = [cout, xs.c, k, k]
                let (x, w) = (random(xs, seed: 21), random(ws4, seed: 22))
                let xt = try device.tensor(x, xs, label: "x"), wt = try device.tensor(w, ws4, label: "w")
                let out = try device.conv2dForward(xt, weight: wt, bias: nil, params: params)
                let r = random(out.shape, seed: 23)
                let gw = try device.tensor([Float](repeating: 0, count: ws4.count), ws4, label: "gw")
                let gx = try device.conv2dBackward(try device.tensor(r, out.shape, label: "r"), x: xt, weight: wt, params: params,
                                                   gradWeight: gw, gradBias: nil, needInputGrad: true)
                func loss(_ xv: [Float], _ wv: [Float]) throws -> Double {
                    let o = try device.conv2dForward(try device.tensor(xv, xs, label: "x"), weight: try device.tensor(wv, ws4, label: "w"),
                                                     bias: nil, params: params).read()
                    return zip(o, r).reduce(0) { $0 + Double($1.0) * Double($1.1) }
                }
                let h: Float = 0.25
                func central(_ v: [Float], _ f: ([Float]) throws -> Double) throws -> [Float] {
                    try v.indices.map { i in
                        var (plus, minus) = (v, v)
                        plus[i] += h
                        minus[i] -= h
                        return Float((try f(plus) - f(minus)) / Double(2 * h))
                    }
                }
                let label = "\(name): x \(xs), w \(ws4), \(params)"
                assertClose(try gx!.read(), try central(x) { try loss($0, w) }, atol: 1e-3, rtol: 1e-3, "\(label): grad input vs finite differences")
                assertClose(try gw.read(), try central(w) { try loss(x, $0) }, atol: 1e-3, rtol: 1e-3, "\(label): grad weight vs finite differences")
            }
        }
    }

    private func awkwardShapes(_ device: OpenCLBackend, _ algorithm: String) throws {
        // Dilation 2, rectangular kernel, different strides per axis.
        try checkConv(device, x: [2, 5, 9, 7], cout: 3, kernel: (3, 2),
                      params: Conv2dParams(strideH: 1, strideW: 2, padH: 2, padW: 1, dilationH: 2, dilationW: 2), what: "dilation, \(algorithm)")
        // Batch 1, 17 channels, no bias.
        try checkConv(device, x: [1, 17, 7, 5], cout: 17, kernel: (3, 3), params: Conv2dParams(stride: 1, padding: 1), bias: false,
                      what: "batch 1, \(algorithm)")
        // 1×1 pointwise GEMM path with batch 3 and 17 → 5 channels; H*W = 1.
        try checkConv(device, x: [3, 17, 5, 3], cout: 5, kernel: (1, 1), params: Conv2dParams(), what: "pointwise, \(algorithm)")
        try checkConv(device, x: [2, 3, 1, 1], cout: 5, kernel: (1, 1), params: Conv2dParams(), what: "1x1 image, \(algorithm)")
        // Stride 2 with dilation 2 (CLBlast's col2im is wrong there; found by sge validate seed 49/157).
        try checkConv(device, x: [2, 1, 9, 7], cout: 5, kernel: (3, 3), params: Conv2dParams(stride: 2, padding: 1, dilation: 2),
                      what: "stride 2 dilation 2, \(algorithm)")
        try checkConv(device, x: [3, 2, 7, 2], cout: 9, kernel: (1, 1), params: Conv2dParams(stride: 2, padding: 1, dilation: 2),
                      what: "1x1 stride 2 dilation 2 pad 1, \(algorithm)")
    }

    func testConvForcedChunkingAndAlgorithms() throws {
        let device = try testDevice()
        let saved = (device.convWorkspace.columnLimitBytes, device.convWorkspace.algorithm)
        defer { (device.convWorkspace.columnLimitBytes, device.convWorkspace.algorithm) = saved }
        // One image's column matrix here is 3·3·3 × 5·4 floats = 2160 bytes: a 5000-byte cap gives
        // chunks of 2 images over a batch of 5 (2 + 2 + 1), exercising chunk offsets and the tail,
        // for every algorithm.
        device.convWorkspace.columnLimitBytes = 5000
        for algorithm in ConvAlgorithm.allCases {
            device.convWorkspace.algorithm = algorithm
            try checkConv(device, x: [5, 3, 9, 7], cout: 4, kernel: (3, 3), params: Conv2dParams(stride: 2, padding: 1),
                          what: "chunked \(algorithm)")
        }
        // A cap below one image still runs (one image per chunk).
        device.convWorkspace.columnLimitBytes = 1
        for algorithm in [ConvAlgorithm.im2colBatchedGemm, .im2colGemm, .wide] {
            device.convWorkspace.algorithm = algorithm
            try checkConv(device, x: [3, 3, 9, 7], cout: 4, kernel: (3, 3), params: Conv2dParams(stride: 1, padding: 1),
                          what: "cap 1 byte, \(algorithm)")
        }
    }

    /// Both linear paths against the reference: conv_cpu.cl's kernels (the default on CPU drivers up
    /// to `linearCPUMaxProducts`, a linear layer as a 1×1 convolution of 1×1 images) and CLBlast
    /// (forced with `cpuKernels = false`; the default on GPUs and above the limit: 64 × 256 → 300).
    func testLinear() throws {
        let device = try testDevice()
        defer { device.convWorkspace.cpuKernels = nil }
        for cpuKernels in [nil, false] {
            device.convWorkspace.cpuKernels = cpuKernels
            try checkLinear(device, cpuKernels == nil ? "default path" : "CLBlast")
        }
        device.convWorkspace.cpuKernels = nil
        XCTAssertTrue(device.linearOnCPUKernels(128, 64, 10) == !device.device.info.isGPU)
        XCTAssertFalse(device.linearOnCPUKernels(64, 2048, 1000))
    }

    private func checkLinear(_ device: OpenCLBackend, _ what: String) throws {
        let ref = ReferenceBackend()
        for (n, i, o, useBias) in [(1, 7, 3, true), (5, 93, 17, true), (4, 2, 10, false), (3, 1, 1, true), (128, 64, 10, true),
                                   (64, 256, 300, true)] {
            let (x, w, b, go) = (random([n, i], seed: 7), random([o, i], seed: 8), random([o], seed: 9), random([n, o], seed: 10))
            let (gw0, gb0) = (random([o, i], seed: 11), random([o], seed: 12))
            var results: [[Float]] = []
            for backend in [device as any Backend, ref as any Backend] {
                let xt = try backend.tensor(x, [n, i], label: "x"), wt = try backend.tensor(w, [o, i], label: "w")
                let bt = useBias ? try backend.tensor(b, [o], label: "b") : nil
                let y = try backend.linearForward(xt, weight: wt, bias: bt)
                let gwt = try backend.tensor(gw0, [o, i], label: "gw"), gbt = try backend.tensor(gb0, [o], label: "gb")
                let gx = try backend.linearBackward(try backend.tensor(go, [n, o], label: "go"), x: xt, weight: wt,
                                                    gradWeight: gwt, gradBias: useBias ? gbt : nil)
                results += [try y.read(), try gx.read(), try gwt.read(), try gbt.read()]
            }
            for (j, name) in ["output", "grad input", "grad weight", "grad bias"].enumerated() {
                assertClose(results[j], results[j + 4], atol: atol, rtol: rtol, "linear \(n)×\(i)→\(o), \(what): \(name)")
            }
        }
    }

    /// Shape errors are typed and name the op and the shapes (checked on the reference backend, so
    /// this runs without OpenCL; both backends share the checks).
    func testShapeErrors() throws {
        let ref = ReferenceBackend()
        let x = ref.zeros([1, 3, 5, 5], label: "x")
        func expectShapeError(_ mustMention: [String], _ body: () throws -> Any?, line: UInt = #line) {
            do {
                _ = try body()
                XCTFail("expected a shape error", line: line)
            } catch let SGEError.shape(message) {
                for s in mustMention { XCTAssertTrue(message.contains(s), "'\(message)' should mention \(s)", line: line) }
            } catch {
                XCTFail("expected SGEError.shape, got \(error)", line: line)
            }
        }
        expectShapeError(["conv2d forward", "[1, 3, 5, 5]", "[4, 2, 3, 3]"]) {
            try ref.conv2dForward(x, weight: ref.zeros([4, 2, 3, 3], label: "w"), bias: nil, params: Conv2dParams())
        }
        expectShapeError(["empty output", "[4, 3, 7, 7]"]) {
            try ref.conv2dForward(x, weight: ref.zeros([4, 3, 7, 7], label: "w"), bias: nil, params: Conv2dParams())
        }
        expectShapeError(["bias", "[5]", "[4, 3, 3, 3]"]) {
            try ref.conv2dForward(x, weight: ref.zeros([4, 3, 3, 3], label: "w"), bias: ref.zeros([5], label: "b"), params: Conv2dParams())
        }
        expectShapeError(["grad output", "[1, 4, 5, 5]"]) {
            try ref.conv2dBackward(ref.zeros([1, 4, 5, 5]), x: x, weight: ref.zeros([4, 3, 3, 3]), params: Conv2dParams(),
                                   gradWeight: ref.zeros([4, 3, 3, 3]), gradBias: nil, needInputGrad: true)
        }
        expectShapeError(["linear forward", "[2, 7]", "[3, 6]"]) {
            try ref.linearForward(ref.zeros([2, 7]), weight: ref.zeros([3, 6]), bias: nil)
        }
        XCTAssertThrowsError(try ref.conv2dForward(x, weight: ref.zeros([4, 3, 3, 3]), bias: nil, params: Conv2dParams(stride: 0)))
    }
}
