import SGEKernels
import SGEOpenCL
import SGEReference
import SGETensor

/// Stride, padding and dilation of a 2-D convolution.
public struct Conv2dParams: Hashable, Sendable, CustomStringConvertible {
    public var strideH, strideW, padH, padW, dilationH, dilationW: Int

    public init(strideH: Int, strideW: Int, padH: Int, padW: Int, dilationH: Int = 1, dilationW: Int = 1) {
        (self.strideH, self.strideW, self.padH, self.padW, self.dilationH, self.dilationW) =
            (strideH, strideW, padH, padW, dilationH, dilationW)
    }

    /// The same stride, padding and dilation in both directions.
    public init(stride: Int = 1, padding: Int = 0, dilation: Int = 1) {
        self.init(strideH: stride, strideW: stride, padH: padding, padW: padding, dilationH: dilation, dilationW: dilation)
    }

    public var description: String {
        "stride (\(strideH), \(strideW)), padding (\(padH), \(padW)), dilation (\(dilationH), \(dilationW))"
    }
}

/// Conv2d (NCHW, weight [Cout, Cin, KH, KW], cross-correlation as PyTorch) and Linear (x [N, in],
/// weight [out, in]); the maths is in SGEReference/Conv.swift and Linear.swift. Parameter
/// gradients accumulate (+=) into the tensors passed in; activation gradients are new tensors.
public protocol ConvOps {
    /// out = conv2d(x, weight) + bias, shape [N, Cout, OH, OW].
    func conv2dForward(_ x: Tensor, weight: Tensor, bias: Tensor?, params: Conv2dParams) throws -> Tensor
    /// gradWeight += ∂L/∂W, gradBias += ∂L/∂b; returns ∂L/∂x when `needInputGrad` (else nil).
    func conv2dBackward(_ gradOut: Tensor, x: Tensor, weight: Tensor, params: Conv2dParams,
                        gradWeight: Tensor, gradBias: Tensor?, needInputGrad: Bool) throws -> Tensor?
    /// y = x·Wᵀ + b, shape [N, out].
    func linearForward(_ x: Tensor, weight: Tensor, bias: Tensor?) throws -> Tensor
    /// gradWeight += goᵀ·x, gradBias += Σ_n go; returns gx = go·W.
    func linearBackward(_ gradOut: Tensor, x: Tensor, weight: Tensor, gradWeight: Tensor, gradBias: Tensor?) throws -> Tensor
}

// MARK: shape checks (shared by both backends)

/// Validates a convolution's tensors and returns its index geometry.
func conv2dShape(_ x: Tensor, weight: Tensor, bias: Tensor?, params p: Conv2dParams, op: String) throws -> Reference.Conv2dShape {
    try x.shape.require(rank: 4, "\(op): input \(x.label)")
    try weight.shape.require(rank: 4, "\(op): weight \(weight.label)")
    guard p.strideH > 0, p.strideW > 0, p.dilationH > 0, p.dilationW > 0, p.padH >= 0, p.padW >= 0 else {
        throw SGEError.invalidArgument("\(op): strides and dilations must be positive and padding non-negative, got \(p)")
    }
    guard x.shape.c == weight.shape[1] else {
        throw SGEError.shape("\(op): input \(x.label) \(x.shape) has \(x.shape.c) channels but weight \(weight.label) \(weight.shape) expects Cin = \(weight.shape[1])")
    }
    let s = Reference.Conv2dShape(n: x.shape.n, c: x.shape.c, h: x.shape.h, w: x.shape.w, k: weight.shape[0],
                                  kh: weight.shape[2], kw: weight.shape[3], strideH: p.strideH, strideW: p.strideW,
                                  padH: p.padH, padW: p.padW, dilationH: p.dilationH, dilationW: p.dilationW)
    let spanH = s.h + 2 * s.padH - s.dilationH * (s.kh - 1), spanW = s.w + 2 * s.padW - s.dilationW * (s.kw - 1)
    guard spanH > 0, spanW > 0 else {
        throw SGEError.shape("\(op): input \(x.label) \(x.shape) with weight \(weight.label) \(weight.shape) and \(p) gives an empty output (\(s.outH)×\(s.outW)); the padded input is smaller than the dilated kernel")
    }
    if let bias, bias.count != s.k || bias.shape.rank != 1 {
        throw SGEError.shape("\(op): bias \(bias.label) has shape \(bias.shape) but weight \(weight.label) \(weight.shape) has \(s.k) output channels: want [\(s.k)]")
    }
    return s
}

func conv2dBackwardShape(_ gradOut: Tensor, x: Tensor, weight: Tensor, params: Conv2dParams,
                         gradWeight: Tensor, gradBias: Tensor?) throws -> Reference.Conv2dShape {
    let op = "conv2d backward"
    let s = try conv2dShape(x, weight: weight, bias: nil, params: params, op: op)
    let want = Shape([s.n, s.k, s.outH, s.outW])
    guard gradOut.shape == want else {
        throw SGEError.shape("\(op): grad output \(gradOut.label) has shape \(gradOut.shape) but input \(x.label) \(x.shape) with weight \(weight.label) \(weight.shape) and \(params) gives output \(want)")
    }
    try requireSameShape(gradWeight, weight, op: op)
    if let gradBias, gradBias.count != s.k || gradBias.shape.rank != 1 {
        throw SGEError.shape("\(op): bias gradient \(gradBias.label) has shape \(gradBias.shape) but weight \(weight.label) \(weight.shape) has \(s.k) output channels: want [\(s.k)]")
    }
    return s
}

/// (N, in, out) of a Linear layer after checking x, weight and bias.
func linearShape(_ x: Tensor, weight: Tensor, bias: Tensor?, op: String) throws -> (n: Int, inF: Int, outF: Int) {
    try x.shape.require(rank: 2, "\(op): input \(x.label)")
    try weight.shape.require(rank: 2, "\(op): weight \(weight.label)")
    guard x.shape[1] == weight.shape[1] else {
        throw SGEError.shape("\(op): input \(x.label) \(x.shape) has \(x.shape[1]) features but weight \(weight.label) \(weight.shape) expects \(weight.shape[1])")
    }
    if let bias, bias.count != weight.shape[0] || bias.shape.rank != 1 {
        throw SGEError.shape("\(op): bias \(bias.label) has shape \(bias.shape) but weight \(weight.label) \(weight.shape) has \(weight.shape[0]) outputs: want [\(weight.shape[0])]")
    }
    return (x.shape[0], x.shape[1], weight.shape[0])
}

func linearBackwardShape(_ gradOut: Tensor, x: Tensor, weight: Tensor, gradWeight: Tensor, gradBias: Tensor?) throws -> (n: Int, inF: Int, outF: Int) {
    let op = "linear backward"
    let d = try linearShape(x, weight: weight, bias: gradBias, op: op)
    guard gradOut.shape == Shape([d.n, d.outF]) else {
        throw SGEError.shape("\(op): grad output \(gradOut.label) has shape \(gradOut.shape) but input \(x.label) \(x.shape) with weight \(weight.label) \(weight.shape) gives [\(d.n), \(d.outF)]")
    }
    try requireSameShape(gradWeight, weight, op: op)
    return d
}

/// gradient += delta on the host (reference backend accumulation).
private func accumulate(_ t: Tensor, _ delta: [Float]) throws {
    try t.withMutableHostValues { v in for i in 0..<v.count { v[i] += delta[i] } }
}

// MARK: reference backend

extension ReferenceBackend: ConvOps {
    public func conv2dForward(_ x: Tensor, weight: Tensor, bias: Tensor?, params: Conv2dParams) throws -> Tensor {
        let s = try conv2dShape(x, weight: weight, bias: bias, params: params, op: "conv2d forward")
        let out = Reference.conv2dForward(x: try x.values(), weight: try weight.values(), bias: try bias?.values(), shape: s)
        return try tensor(out, [s.n, s.k, s.outH, s.outW], label: "conv2d")
    }

    public func conv2dBackward(_ gradOut: Tensor, x: Tensor, weight: Tensor, params: Conv2dParams,
                               gradWeight: Tensor, gradBias: Tensor?, needInputGrad: Bool) throws -> Tensor? {
        let s = try conv2dBackwardShape(gradOut, x: x, weight: weight, params: params, gradWeight: gradWeight, gradBias: gradBias)
        let go = try gradOut.values()
        let (gw, gb) = Reference.conv2dBackwardWeight(gradOut: go, x: try x.values(), shape: s)
        try accumulate(gradWeight, gw)
        if let gradBias { try accumulate(gradBias, gb) }
        guard needInputGrad else { return nil }
        return try tensor(Reference.conv2dBackwardInput(gradOut: go, weight: try weight.values(), shape: s), x.shape, label: "conv2d grad input")
    }

    public func linearForward(_ x: Tensor, weight: Tensor, bias: Tensor?) throws -> Tensor {
        let d = try linearShape(x, weight: weight, bias: bias, op: "linear forward")
        let y = Reference.linearForward(x: try x.values(), weight: try weight.values(), bias: try bias?.values(),
                                        n: d.n, inFeatures: d.inF, outFeatures: d.outF)
        return try tensor(y, [d.n, d.outF], label: "linear")
    }

    public func linearBackward(_ gradOut: Tensor, x: Tensor, weight: Tensor, gradWeight: Tensor, gradBias: Tensor?) throws -> Tensor {
        let d = try linearBackwardShape(gradOut, x: x, weight: weight, gradWeight: gradWeight, gradBias: gradBias)
        let r = Reference.linearBackward(gradOut: try gradOut.values(), x: try x.values(), weight: try weight.values(),
                                         n: d.n, inFeatures: d.inF, outFeatures: d.outF)
        try accumulate(gradWeight, r.weight)
        if let gradBias { try accumulate(gradBias, r.bias) }
        return try tensor(r.x, x.shape, label: "linear grad input")
    }
}

// MARK: OpenCL backend

/// The convolution algorithms (`ConvWorkspace.algorithm`; the default is `.wide`, in ConvWide.swift,
/// whose path per shape and direction is chosen by timing once per device (ConvChoice.swift):
/// conv_cpu.cl's kernels on CPU drivers (ConvCPU.swift), CLBlast's backward plans on GPUs).
/// 1×1/stride-1/pad-0 convolutions read x as their columns and write the input gradient directly
/// (no im2col, no col2im) in every path that runs per image. Grad weight accumulates (beta = 1);
/// grad input is computed into columns and gathered back with col2im.
/// The measurements that chose these are in docs/performance/pocl.md ("Convolution algorithm notes").
extension OpenCLBackend: ConvOps {
    private func geometry(_ s: Reference.Conv2dShape) -> CLContext.ConvGeometry {
        CLContext.ConvGeometry(channels: s.c, height: s.h, width: s.w, kernelH: s.kh, kernelW: s.kw, padH: s.padH, padW: s.padW,
                               strideH: s.strideH, strideW: s.strideW, dilationH: s.dilationH, dilationW: s.dilationW)
    }

    /// A 1×1 kernel with stride 1 and no padding: the input image is its own column matrix.
    func isPointwise(_ s: Reference.Conv2dShape) -> Bool {
        s.kh == 1 && s.kw == 1 && s.strideH == 1 && s.strideW == 1 && s.padH == 0 && s.padW == 0
    }

    /// Images per im2col chunk so the chunk's column matrices stay under the workspace cap (≥ 1).
    func imagesPerChunk(_ s: Reference.Conv2dShape) -> Int {
        let perImage = s.c * s.kh * s.kw * s.outH * s.outW * 4
        return max(1, min(s.n, convWorkspace.columnLimitBytes / max(perImage, 1)))
    }

    /// out[n, k, p] += bias[k] over a [N, K, P] tensor.
    private func enqueueBiasAdd(_ out: Tensor, bias: Tensor, channels: Int, inner: Int) throws {
        try launch(kernel("bias_add", KernelSource.conv),
                   [.buffer(out.deviceBufferForUpdate()), .buffer(bias.deviceBuffer()), .int(Int32(channels)),
                    .int(Int32(inner)), .int(Int32(out.count))], count: out.count)
    }

    /// gradBias[k] += Σ_{n,p} gradOut[n, k, p].
    private func enqueueBiasGrad(_ gradOut: Tensor, gradBias: Tensor, batch: Int, channels: Int, inner: Int) throws {
        var wg = 1
        while wg * 2 <= min(256, device.info.maxWorkGroupSize) { wg *= 2 }
        var k = try kernel("bias_grad", KernelSource.conv, ["WG": "\(wg)"])
        while k.maxWorkGroupSize < wg, wg > 1 {
            wg /= 2
            k = try kernel("bias_grad", KernelSource.conv, ["WG": "\(wg)"])
        }
        try launch(k, [.buffer(gradOut.deviceBuffer()), .buffer(gradBias.deviceBufferForUpdate()), .int(Int32(batch)),
                       .int(Int32(channels)), .int(Int32(inner))], global: [channels * wg], local: [wg])
    }

    public func conv2dForward(_ x: Tensor, weight: Tensor, bias: Tensor?, params: Conv2dParams) throws -> Tensor {
        let s = try conv2dShape(x, weight: weight, bias: bias, params: params, op: "conv2d forward")
        let out = try output([s.n, s.k, s.outH, s.outW], label: "conv2d")
        let (xb, wb, ob) = (try x.deviceBuffer(), try weight.deviceBuffer(), try out.deviceBufferForOverwrite())
        let p = s.outH * s.outW, ckk = s.c * s.kh * s.kw
        if convWorkspace.algorithm == .wide {
            var scratch: Tensor?
            let path = try chooseConvPath(s, .forward) { candidate in
                if scratch == nil { scratch = try output(out.shape, label: "conv2d (timing a path)") }
                try wideForward(s, x: xb, weight: wb, out: scratch!.deviceBufferForOverwrite(), bias: bias, path: candidate)
            }
            try wideForward(s, x: xb, weight: wb, out: ob, bias: bias, path: path)
            return out
        }
        if isPointwise(s) {
            // out[n] (K×P) = W (K×C) · x[n] (C×P) for every n.
            try device.enqueueSgemmStridedBatched(.no, .no, m: s.k, n: p, k: s.c, a: wb, lda: s.c, strideA: 0,
                                                  b: xb, ldb: p, strideB: s.c * p, c: ob, ldc: p, strideC: s.k * p, batch: s.n)
        } else {
            let g = geometry(s)
            let chunk = imagesPerChunk(s)
            let col = try convWorkspace.columnBuffer(bytes: chunk * ckk * p * 4, context: device)
            for n0 in stride(from: 0, to: s.n, by: chunk) {
                let b = min(chunk, s.n - n0)
                for i in 0..<b {
                    try device.enqueueIm2col(g, im: xb, imOffset: (n0 + i) * s.c * s.h * s.w, col: col, colOffset: i * ckk * p)
                }
                if convWorkspace.algorithm == .im2colBatchedGemm {
                    try device.enqueueSgemmStridedBatched(.no, .no, m: s.k, n: p, k: ckk, a: wb, lda: ckk, strideA: 0,
                                                          b: col, ldb: p, strideB: ckk * p, c: ob, cOffset: n0 * s.k * p, ldc: p,
                                                          strideC: s.k * p, batch: b)
                } else {
                    for i in 0..<b {
                        try device.enqueueSgemm(.no, .no, m: s.k, n: p, k: ckk, a: wb, lda: ckk, b: col, bOffset: i * ckk * p, ldb: p,
                                                c: ob, cOffset: (n0 + i) * s.k * p, ldc: p)
                    }
                }
            }
        }
        if let bias { try enqueueBiasAdd(out, bias: bias, channels: s.k, inner: p) }
        return out
    }

    public func conv2dBackward(_ gradOut: Tensor, x: Tensor, weight: Tensor, params: Conv2dParams,
                               gradWeight: Tensor, gradBias: Tensor?, needInputGrad: Bool) throws -> Tensor? {
        let s = try conv2dBackwardShape(gradOut, x: x, weight: weight, params: params, gradWeight: gradWeight, gradBias: gradBias)
        let p = s.outH * s.outW, ckk = s.c * s.kh * s.kw
        let (gob, xb, wb) = (try gradOut.deviceBuffer(), try x.deviceBuffer(), try weight.deviceBuffer())
        let gwb = try gradWeight.deviceBufferForUpdate()
        if let gradBias { try enqueueBiasGrad(gradOut, gradBias: gradBias, batch: s.n, channels: s.k, inner: p) }

        if convWorkspace.algorithm == .wide {
            var scratch: (gw: Tensor, gx: Tensor?)?
            let path = try chooseConvPath(s, .backward) { candidate in
                if scratch == nil {
                    scratch = (try output(weight.shape, label: "conv2d grad weight (timing a path)"),
                               needInputGrad ? try output(x.shape, label: "conv2d grad input (timing a path)") : nil)
                    try fill(scratch!.gw, 0)
                }
                try wideBackward(s, gradOut: gob, x: xb, weight: wb, gradWeight: scratch!.gw.deviceBufferForUpdate(),
                                 gradInput: try scratch!.gx?.deviceBufferForOverwrite(), path: candidate)
            }
            let gx = needInputGrad ? try output(x.shape, label: "conv2d grad input") : nil
            try wideBackward(s, gradOut: gob, x: xb, weight: wb, gradWeight: gwb, gradInput: try gx?.deviceBufferForOverwrite(), path: path)
            return gx
        }
        if isPointwise(s) {
            // gW (K×C) += go[n] (K×P) · x[n]ᵀ (P×C), one accumulating GEMM per image.
            for n in 0..<s.n {
                try device.enqueueSgemm(.no, .yes, m: s.k, n: s.c, k: p, a: gob, aOffset: n * s.k * p, lda: p,
                                        b: xb, bOffset: n * s.c * p, ldb: p, beta: 1, c: gwb, ldc: s.c)
            }
            guard needInputGrad else { return nil }
            // gx[n] (C×P) = Wᵀ (C×K) · go[n] (K×P).
            let gx = try output(x.shape, label: "conv2d grad input")
            try device.enqueueSgemmStridedBatched(.yes, .no, m: s.c, n: p, k: s.k, a: wb, lda: s.c, strideA: 0,
                                                  b: gob, ldb: p, strideB: s.k * p, c: gx.deviceBufferForOverwrite(), ldc: p,
                                                  strideC: s.c * p, batch: s.n)
            return gx
        }

        let g = geometry(s)
        let chunk = imagesPerChunk(s)
        let col = try convWorkspace.columnBuffer(bytes: chunk * ckk * p * 4, context: device)
        let imageSize = s.c * s.h * s.w
        // Grad weight: gW (K×CKK) += go[n] (K×P) · col[n]ᵀ (P×CKK).
        for n0 in stride(from: 0, to: s.n, by: chunk) {
            let b = min(chunk, s.n - n0)
            for i in 0..<b {
                try device.enqueueIm2col(g, im: xb, imOffset: (n0 + i) * imageSize, col: col, colOffset: i * ckk * p)
            }
            for i in 0..<b {
                try device.enqueueSgemm(.no, .yes, m: s.k, n: ckk, k: p, a: gob, aOffset: (n0 + i) * s.k * p, lda: p,
                                        b: col, bOffset: i * ckk * p, ldb: p, beta: 1, c: gwb, ldc: ckk)
            }
        }
        guard needInputGrad else { return nil }
        // Grad input: col[n] (CKK×P) = Wᵀ (CKK×K) · go[n] (K×P), then col2im adds it into gx[n].
        let gx = try output(x.shape, label: "conv2d grad input")
        // CLBlast 1.5.3's col2im is wrong (and writes out of bounds) when stride and dilation share a
        // factor > 1 on an axis (found by `sge validate`); those geometries use our gather kernel.
        let blastCol2imSafe = gcd(s.strideH, s.dilationH) == 1 && gcd(s.strideW, s.dilationW) == 1
        if blastCol2imSafe { try fill(gx, 0) }
        let gxb = blastCol2imSafe ? try gx.deviceBufferForUpdate() : try gx.deviceBufferForOverwrite()
        for n0 in stride(from: 0, to: s.n, by: chunk) {
            let b = min(chunk, s.n - n0)
            try device.enqueueSgemmStridedBatched(.yes, .no, m: ckk, n: p, k: s.k, a: wb, lda: ckk, strideA: 0,
                                                  b: gob, bOffset: n0 * s.k * p, ldb: p, strideB: s.k * p,
                                                  c: col, ldc: p, strideC: ckk * p, batch: b)
            if blastCol2imSafe {
                for i in 0..<b {
                    try device.enqueueCol2im(g, col: col, colOffset: i * ckk * p, im: gxb, imOffset: (n0 + i) * imageSize)
                }
            } else {
                for i in 0..<b { try enqueueCol2imWide(s, cols: col, colOffset: i * ckk * p, gx: gxb, n0: n0 + i, b: 1) }
            }
        }
        return gx
    }

    /// The linear layer as a 1×1 convolution of N images of in channels and 1×1 pixels (the same
    /// memory layout: x [N, in], W [out, in], y [N, out]), for conv_cpu.cl's kernels.
    private func linearAsConv(_ n: Int, _ inF: Int, _ outF: Int) -> Reference.Conv2dShape {
        Reference.Conv2dShape(n: n, c: inF, h: 1, w: 1, k: outF, kh: 1, kw: 1)
    }

    /// Whether a linear layer runs conv_cpu.cl's kernels instead of CLBlast: on CPU drivers (or where
    /// `ConvWorkspace.cpuKernels` forces them) up to `linearCPUMaxProducts` multiply-adds. The default
    /// model's classifier (128 × 64 → 10) is 82K; its three CLBlast GEMMs (NT, TN, NN) made PoCL
    /// compile CLBlast's GEMM program and kernels for ~60 s of a fresh machine's first epoch, for
    /// well under a millisecond of work per step. ResNet-50's (64 × 2048 → 1000, 131M) keeps CLBlast.
    public func linearOnCPUKernels(_ n: Int, _ inF: Int, _ outF: Int) -> Bool {
        (convWorkspace.cpuKernels ?? !device.info.isGPU) && n * inF * outF <= Self.linearCPUMaxProducts
    }
    public static let linearCPUMaxProducts = 1 << 22

    public func linearForward(_ x: Tensor, weight: Tensor, bias: Tensor?) throws -> Tensor {
        let d = try linearShape(x, weight: weight, bias: bias, op: "linear forward")
        let y = try output([d.n, d.outF], label: "linear")
        if linearOnCPUKernels(d.n, d.inF, d.outF) {
            try cpuForward(linearAsConv(d.n, d.inF, d.outF), x: x.deviceBuffer(), weight: weight.deviceBuffer(),
                           out: y.deviceBufferForOverwrite(), bias: bias?.deviceBuffer(), implicit: false)
            return y
        }
        // y (N×out) = x (N×in) · Wᵀ (in×out).
        try device.enqueueSgemm(.no, .yes, m: d.n, n: d.outF, k: d.inF, a: x.deviceBuffer(), lda: d.inF,
                                b: weight.deviceBuffer(), ldb: d.inF, c: y.deviceBufferForOverwrite(), ldc: d.outF)
        if let bias { try enqueueBiasAdd(y, bias: bias, channels: d.outF, inner: 1) }
        return y
    }

    public func linearBackward(_ gradOut: Tensor, x: Tensor, weight: Tensor, gradWeight: Tensor, gradBias: Tensor?) throws -> Tensor {
        let d = try linearBackwardShape(gradOut, x: x, weight: weight, gradWeight: gradWeight, gradBias: gradBias)
        let gob = try gradOut.deviceBuffer()
        if let gradBias { try enqueueBiasGrad(gradOut, gradBias: gradBias, batch: d.n, channels: d.outF, inner: 1) }
        if linearOnCPUKernels(d.n, d.inF, d.outF) {
            let gx = try output(x.shape, label: "linear grad input")
            try cpuBackward(linearAsConv(d.n, d.inF, d.outF), gradOut: gob, x: x.deviceBuffer(), weight: weight.deviceBuffer(),
                            gradWeight: gradWeight.deviceBufferForUpdate(), gradInput: gx.deviceBufferForOverwrite(), implicit: false)
            return gx
        }
        // gW (out×in) += goᵀ (out×N) · x (N×in).
        try device.enqueueSgemm(.yes, .no, m: d.outF, n: d.inF, k: d.n, a: gob, lda: d.outF, b: x.deviceBuffer(), ldb: d.inF,
                                beta: 1, c: gradWeight.deviceBufferForUpdate(), ldc: d.inF)
        // gx (N×in) = go (N×out) · W (out×in).
        let gx = try output(x.shape, label: "linear grad input")
        try device.enqueueSgemm(.no, .no, m: d.n, n: d.inF, k: d.outF, a: gob, lda: d.outF, b: weight.deviceBuffer(), ldb: d.inF,
                                c: gx.deviceBufferForOverwrite(), ldc: d.inF)
        return gx
    }
}

/// Greatest common divisor of two positive integers.
func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
