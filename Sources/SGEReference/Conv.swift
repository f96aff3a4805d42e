/// 2-D convolution (cross-correlation, as PyTorch's `conv2d`), NCHW (kernels in `Kernels/conv.cl`
/// plus CLBlast im2col/col2im/GEMM).
///
/// x [N, C, H, W], weight [K, C, KH, KW], bias [K], out [N, K, OH, OW] with
///
///     OH = (H + 2·padH - dilationH·(KH-1) - 1) / strideH + 1      (same for OW)
///     ih(oh, i) = oh·strideH - padH + i·dilationH,   iw(ow, j) = ow·strideW - padW + j·dilationW
///
///     forward:        out[n,k,oh,ow] = b[k] + Σ_{c,i,j} w[k,c,i,j] · x[n,c,ih,iw]   (x = 0 outside the image)
///     grad input:     gx[n,c,h,w]   = Σ_{k,i,j,oh,ow : ih(oh,i)=h, iw(ow,j)=w} w[k,c,i,j] · go[n,k,oh,ow]
///     grad weight:    gw[k,c,i,j]   = Σ_{n,oh,ow} go[n,k,oh,ow] · x[n,c,ih,iw]
///     grad bias:      gb[k]         = Σ_{n,oh,ow} go[n,k,oh,ow]
///
/// The cores work in Double (so tests can take central finite differences of them); the Float
/// wrappers are what `ReferenceBackend` calls.
extension Reference {
    /// Everything that fixes a convolution's index maps.
    public struct Conv2dShape: Hashable, Sendable, CustomStringConvertible {
        public var n, c, h, w, k, kh, kw: Int
        public var strideH, strideW, padH, padW, dilationH, dilationW: Int
        public init(n: Int, c: Int, h: Int, w: Int, k: Int, kh: Int, kw: Int, strideH: Int = 1, strideW: Int = 1,
                    padH: Int = 0, padW: Int = 0, dilationH: Int = 1, dilationW: Int = 1) {
            (self.n, self.c, self.h, self.w, self.k, self.kh, self.kw) = (n, c, h, w, k, kh, kw)
            (self.strideH, self.strideW, self.padH, self.padW) = (strideH, strideW, padH, padW)
            (self.dilationH, self.dilationW) = (dilationH, dilationW)
        }
        public var outH: Int { (h + 2 * padH - dilationH * (kh - 1) - 1) / strideH + 1 }
        public var outW: Int { (w + 2 * padW - dilationW * (kw - 1) - 1) / strideW + 1 }
        public var inputCount: Int { n * c * h * w }
        public var weightCount: Int { k * c * kh * kw }
        public var outputCount: Int { n * k * outH * outW }
        public var description: String {
            "x [\(n), \(c), \(h), \(w)], weight [\(k), \(c), \(kh), \(kw)], stride (\(strideH), \(strideW)), pad (\(padH), \(padW)), dilation (\(dilationH), \(dilationW))"
        }

        /// Calls `body(xIndex, wIndex, outIndex)` for every multiply-add of the convolution, in
        /// a fixed order (the one loop nest all three directions share).
        @inline(__always)
        func forEachTap(_ body: (Int, Int, Int) -> Void) {
            let (oh, ow) = (outH, outW)
            for b in 0..<n {
                for o in 0..<k {
                    for y in 0..<oh {
                        for x in 0..<ow {
                            let outIndex = ((b * k + o) * oh + y) * ow + x
                            for ch in 0..<c {
                                for i in 0..<kh {
                                    let ih = y * strideH - padH + i * dilationH
                                    if ih < 0 || ih >= h { continue }
                                    for j in 0..<kw {
                                        let iw = x * strideW - padW + j * dilationW
                                        if iw < 0 || iw >= w { continue }
                                        body(((b * c + ch) * h + ih) * w + iw, ((o * c + ch) * kh + i) * kw + j, outIndex)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    // MARK: Double cores

    public static func conv2dForward(x: [Double], weight: [Double], bias: [Double]?, shape s: Conv2dShape) -> [Double] {
        precondition(x.count == s.inputCount && weight.count == s.weightCount && (bias?.count ?? s.k) == s.k)
        var out = [Double](repeating: 0, count: s.outputCount)
        s.forEachTap { xi, wi, oi in out[oi] += weight[wi] * x[xi] }
        if let bias {
            let p = s.outH * s.outW
            for i in 0..<out.count { out[i] += bias[(i / p) % s.k] }
        }
        return out
    }

    public static func conv2dBackwardInput(gradOut: [Double], weight: [Double], shape s: Conv2dShape) -> [Double] {
        precondition(gradOut.count == s.outputCount && weight.count == s.weightCount)
        var gx = [Double](repeating: 0, count: s.inputCount)
        s.forEachTap { xi, wi, oi in gx[xi] += weight[wi] * gradOut[oi] }
        return gx
    }

    /// Returns (grad weight, grad bias).
    public static func conv2dBackwardWeight(gradOut: [Double], x: [Double], shape s: Conv2dShape) -> (weight: [Double], bias: [Double]) {
        precondition(gradOut.count == s.outputCount && x.count == s.inputCount)
        var gw = [Double](repeating: 0, count: s.weightCount)
        s.forEachTap { xi, wi, oi in gw[wi] += gradOut[oi] * x[xi] }
        var gb = [Double](repeating: 0, count: s.k)
        let p = s.outH * s.outW
        for i in 0..<gradOut.count { gb[(i / p) % s.k] += gradOut[i] }
        return (gw, gb)
    }

    // MARK: Float wrappers

    public static func conv2dForward(x: [Float], weight: [Float], bias: [Float]?, shape s: Conv2dShape) -> [Float] {
        conv2dForward(x: x.map(Double.init), weight: weight.map(Double.init), bias: bias?.map(Double.init), shape: s).map(Float.init)
    }

    public static func conv2dBackwardInput(gradOut: [Float], weight: [Float], shape s: Conv2dShape) -> [Float] {
        conv2dBackwardInput(gradOut: gradOut.map(Double.init), weight: weight.map(Double.init), shape: s).map(Float.init)
    }

    public static func conv2dBackwardWeight(gradOut: [Float], x: [Float], shape s: Conv2dShape) -> (weight: [Float], bias: [Float]) {
        let (gw, gb) = conv2dBackwardWeight(gradOut: gradOut.map(Double.init), x: x.map(Double.init), shape: s)
        return (gw.map(Float.init), gb.map(Float.init))
    }
}
