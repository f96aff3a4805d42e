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
        device.convWorkspace.algorithm = .wide
        let saved = (ConvWorkspace.perImageMinPlane, device.convWorkspace.im2colPerElement)
        defer { (ConvWorkspace.perImageMinPlane, device.convWorkspace.im2colPerElement) = saved }
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

    func testLinear() throws {
        let device = try testDevice()
        let ref = ReferenceBackend()
        for (n, i, o, useBias) in [(1, 7, 3, true), (5, 93, 17, true), (4, 2, 10, false)] {
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
                assertClose(results[j], results[j + 4], atol: atol, rtol: rtol, "linear \(n)×\(i)→\(o): \(name)")
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
