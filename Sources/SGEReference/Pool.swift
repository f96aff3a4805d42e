import SGETensor

/// 2-D pooling over NCHW planes (kernels in `Kernels/pool.cl`), PyTorch semantics, ceil_mode = False:
///
///     OH = ⌊(H + 2p - k) / s⌋ + 1,   OW likewise;   window(oh, ow) = rows oh·s - p ..< oh·s - p + k (same for columns)
///     max:  y = max over the in-bounds window (padding acts as -inf); argmax = ih·W + iw of the first
///           maximum in row-major order (NaN wins, like PyTorch); ∂L/∂x at argmax += g
///     avg:  y = Σ in-bounds window / D, D = (hend - hstart)·(wend - wstart) with hend = min(hstart + k, H + p)
///           taken before clipping to the image (count_include_pad = True); ∂L/∂x_i = Σ over windows holding i of g / D
///     global avg: y[n, c] = Σ_hw x[n, c, h, w] / (H·W);   ∂L/∂x[n, c, h, w] = g[n, c] / (H·W)
extension Reference {
    /// Output size of one spatial dimension (may be ≤ 0 for invalid geometry; callers check).
    public static func poolOutputSize(_ size: Int, kernel: Int, stride: Int, padding: Int) -> Int {
        let span = size + 2 * padding - kernel
        return span < 0 ? 0 : span / stride + 1
    }

    /// Max pooling in Double; argmax holds the in-plane index ih·W + iw of each output's maximum.
    public static func maxPoolForward(_ x: [Double], shape: Shape, kernel k: Int, stride s: Int, padding p: Int)
        -> (out: [Double], argmax: [Int]) {
        let (planes, h, w) = (shape.n * shape.c, shape.h, shape.w)
        let oh = poolOutputSize(h, kernel: k, stride: s, padding: p), ow = poolOutputSize(w, kernel: k, stride: s, padding: p)
        var out = [Double](repeating: 0, count: planes * oh * ow), arg = [Int](repeating: 0, count: planes * oh * ow)
        for pl in 0..<planes {
            for y in 0..<oh {
                for xo in 0..<ow {
                    let h0 = max(y * s - p, 0), h1 = min(y * s - p + k, h)
                    let w0 = max(xo * s - p, 0), w1 = min(xo * s - p + k, w)
                    var best = -Double.infinity, bestIndex = h0 * w + w0
                    for ih in h0..<h1 {
                        for iw in w0..<w1 {
                            let v = x0(x, pl, ih, iw, h, w)
                            if v > best || v.isNaN { best = v; bestIndex = ih * w + iw }
                        }
                    }
                    out[(pl * oh + y) * ow + xo] = best
                    arg[(pl * oh + y) * ow + xo] = bestIndex
                }
            }
        }
        return (out, arg)
    }

    @inline(__always) private static func x0(_ x: [Double], _ plane: Int, _ ih: Int, _ iw: Int, _ h: Int, _ w: Int) -> Double {
        x[(plane * h + ih) * w + iw]
    }

    /// Max pooling backward in Double: routes each output gradient to its argmax.
    public static func maxPoolBackward(_ gradOut: [Double], argmax: [Int], outputShape: Shape, inputShape: Shape) -> [Double] {
        let planes = inputShape.n * inputShape.c, hw = inputShape.h * inputShape.w, ohw = outputShape.h * outputShape.w
        var gx = [Double](repeating: 0, count: inputShape.count)
        for pl in 0..<planes {
            for o in 0..<ohw { gx[pl * hw + argmax[pl * ohw + o]] += gradOut[pl * ohw + o] }
        }
        return gx
    }

    /// The window of output (y, x): clipped row/column ranges and the count_include_pad divisor.
    @inline(__always) private static func avgWindow(_ y: Int, _ x: Int, h: Int, w: Int, k: Int, s: Int, p: Int)
        -> (h0: Int, h1: Int, w0: Int, w1: Int, divisor: Int) {
        let hs = y * s - p, ws = x * s - p
        let he = min(hs + k, h + p), we = min(ws + k, w + p)
        return (max(hs, 0), min(he, h), max(ws, 0), min(we, w), (he - hs) * (we - ws))
    }

    public static func avgPoolForward(_ x: [Double], shape: Shape, kernel k: Int, stride s: Int, padding p: Int) -> [Double] {
        let (planes, h, w) = (shape.n * shape.c, shape.h, shape.w)
        let oh = poolOutputSize(h, kernel: k, stride: s, padding: p), ow = poolOutputSize(w, kernel: k, stride: s, padding: p)
        var out = [Double](repeating: 0, count: planes * oh * ow)
        for pl in 0..<planes {
            for y in 0..<oh {
                for xo in 0..<ow {
                    let win = avgWindow(y, xo, h: h, w: w, k: k, s: s, p: p)
                    var sum = 0.0
                    for ih in win.h0..<win.h1 { for iw in win.w0..<win.w1 { sum += x0(x, pl, ih, iw, h, w) } }
                    out[(pl * oh + y) * ow + xo] = sum / Double(win.divisor)
                }
            }
        }
        return out
    }

    public static func avgPoolBackward(_ gradOut: [Double], inputShape: Shape, kernel k: Int, stride s: Int, padding p: Int) -> [Double] {
        let (planes, h, w) = (inputShape.n * inputShape.c, inputShape.h, inputShape.w)
        let oh = poolOutputSize(h, kernel: k, stride: s, padding: p), ow = poolOutputSize(w, kernel: k, stride: s, padding: p)
        var gx = [Double](repeating: 0, count: inputShape.count)
        for pl in 0..<planes {
            for y in 0..<oh {
                for xo in 0..<ow {
                    let win = avgWindow(y, xo, h: h, w: w, k: k, s: s, p: p)
                    let g = gradOut[(pl * oh + y) * ow + xo] / Double(win.divisor)
                    for ih in win.h0..<win.h1 { for iw in win.w0..<win.w1 { gx[(pl * h + ih) * w + iw] += g } }
                }
            }
        }
        return gx
    }

    /// [N, C, H, W] → [N, C] means.
    public static func globalAvgPoolForward(_ x: [Double], shape: Shape) -> [Double] {
        let hw = shape.h * shape.w
        return (0..<(shape.n * shape.c)).map { pl in
            var s = 0.0
            for i in 0..<hw { s += x[pl * hw + i] }
            return s / Double(hw)
        }
    }

    public static func globalAvgPoolBackward(_ gradOut: [Double], inputShape: Shape) -> [Double] {
        let hw = inputShape.h * inputShape.w
        return (0..<inputShape.count).map { gradOut[$0 / hw] / Double(hw) }
    }

    // MARK: Float wrappers (argmax as Float indices, exact below 2^24 elements per plane)

    public static func maxPoolForward(_ x: [Float], shape: Shape, kernel: Int, stride: Int, padding: Int) -> (out: [Float], argmax: [Float]) {
        let r = maxPoolForward(x.map(Double.init), shape: shape, kernel: kernel, stride: stride, padding: padding)
        return (r.out.map { Float($0) }, r.argmax.map { Float($0) })
    }

    public static func maxPoolBackward(_ gradOut: [Float], argmax: [Float], outputShape: Shape, inputShape: Shape) -> [Float] {
        maxPoolBackward(gradOut.map(Double.init), argmax: argmax.map { Int($0) }, outputShape: outputShape, inputShape: inputShape).map { Float($0) }
    }

    public static func avgPoolForward(_ x: [Float], shape: Shape, kernel: Int, stride: Int, padding: Int) -> [Float] {
        avgPoolForward(x.map(Double.init), shape: shape, kernel: kernel, stride: stride, padding: padding).map { Float($0) }
    }

    public static func avgPoolBackward(_ gradOut: [Float], inputShape: Shape, kernel: Int, stride: Int, padding: Int) -> [Float] {
        avgPoolBackward(gradOut.map(Double.init), inputShape: inputShape, kernel: kernel, stride: stride, padding: padding).map { Float($0) }
    }

    public static func globalAvgPoolForward(_ x: [Float], shape: Shape) -> [Float] {
        globalAvgPoolForward(x.map(Double.init), shape: shape).map { Float($0) }
    }

    public static func globalAvgPoolBackward(_ gradOut: [Float], inputShape: Shape) -> [Float] {
        globalAvgPoolBackward(gradOut.map(Double.init), inputShape: inputShape).map { Float($0) }
    }
}
