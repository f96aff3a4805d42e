import SGEKernels
import SGEOpenCL
import SGEReference

// MARK: the wide layout (ConvAlgorithm.wide)

extension OpenCLBackend {
    /// Images per wide chunk: the columns (C·KH·KW × B·P) and the [K][B·P] scratch under the cap.
    func wideImagesPerChunk(_ s: Reference.Conv2dShape) -> Int {
        let perImage = (s.c * s.kh * s.kw + s.k) * s.outH * s.outW * 4
        return max(1, min(s.n, convWorkspace.columnLimitBytes / max(perImage, 1)))
    }

    /// The wide kernels with this convolution's geometry compiled in.
    func wideKernel(_ name: String, _ s: Reference.Conv2dShape) throws -> CLKernel {
        try kernel(name, KernelSource.conv, ["KH": "\(s.kh)", "KW": "\(s.kw)", "SH": "\(s.strideH)", "SW": "\(s.strideW)",
                                            "PH": "\(s.padH)", "PW": "\(s.padW)", "DH": "\(s.dilationH)", "DW": "\(s.dilationW)"])
    }

    /// Whether the column kernels run per element (GPUs) or per contiguous block (CPU drivers); see
    /// `ConvWorkspace.im2colPerElement`.
    var columnKernelsPerElement: Bool { convWorkspace.im2colPerElement ?? device.info.isGPU }

    func enqueueIm2colWide(_ s: Reference.Conv2dShape, x: CLBuffer, cols: CLBuffer, n0: Int, b: Int) throws {
        let args: [CLKernel.Arg] = [.buffer(x), .buffer(cols), .int(Int32(n0)), .int(Int32(b)), .int(Int32(s.c)), .int(Int32(s.h)),
                                    .int(Int32(s.w)), .int(Int32(s.outH)), .int(Int32(s.outW))]
        if columnKernelsPerElement {
            // GPUs: one work-item per output position, so neighbouring work-items write neighbouring columns.
            try launch(wideKernel("im2col_wide", s), args, global: [s.outW, s.outH, b * s.c], local: nil)
        } else {
            try launch(wideKernel("im2col_rows", s), args, global: [s.kh * s.kw, b * s.c], local: [1, 1])
        }
    }

    /// gx[n0 ..< n0+b] = col2im of the chunk's columns (a gather that overwrites gx).
    func enqueueCol2imWide(_ s: Reference.Conv2dShape, cols: CLBuffer, colOffset: Int, gx: CLBuffer, n0: Int, b: Int) throws {
        let args: [CLKernel.Arg] = [.buffer(cols), .int(Int32(colOffset)), .buffer(gx), .int(Int32(n0)), .int(Int32(b)), .int(Int32(s.c)),
                                    .int(Int32(s.h)), .int(Int32(s.w)), .int(Int32(s.outH)), .int(Int32(s.outW))]
        if columnKernelsPerElement {
            try launch(wideKernel("col2im_wide", s), args, global: [s.w, s.h, b * s.c], local: nil)
        } else {
            try launch(wideKernel("col2im_rows", s), args, global: [b * s.c], local: [1])
        }
    }

    /// The implicit-GEMM mode of a conv_cpu.cl path (`implicitApplies`): chunked columns for
    /// `.cpuKernels`; for `.cpuImplicit` by shape, or everywhere when `SGE_CONV_CPU_IMPLICIT=1` forces it.
    func implicitMode(_ path: ConvPath) -> Bool? { path == .cpuKernels ? false : convWorkspace.cpuImplicit == true ? true : nil }

    /// Per chunk: cols = im2col_wide(x); R (K × B·P) = W · cols; out = NCHW(R) + bias.
    func wideForward(_ s: Reference.Conv2dShape, x: CLBuffer, weight: CLBuffer, out: CLBuffer, bias: Tensor?, path: ConvPath) throws {
        let biasBuffer = try bias?.deviceBuffer()
        switch path {
        case .winograd, .winogradImplicit, .winogradFull: return try winogradForward(s, x: x, weight: weight, out: out, bias: biasBuffer)
        case .cpuKernels, .cpuImplicit:
            return try cpuForward(s, x: x, weight: weight, out: out, bias: biasBuffer, implicit: implicitMode(path))
        default: break
        }
        let p = s.outH * s.outW, ckk = s.c * s.kh * s.kw
        let chunk = wideImagesPerChunk(s)
        let cols = try convWorkspace.columnBuffer(bytes: chunk * ckk * p * 4, context: device)
        let wide = try convWorkspace.wideBuffer(bytes: chunk * s.k * p * 4, context: device)
        for n0 in stride(from: 0, to: s.n, by: chunk) {
            let b = min(chunk, s.n - n0)
            try enqueueIm2colWide(s, x: x, cols: cols, n0: n0, b: b)
            try device.enqueueSgemm(.no, .no, m: s.k, n: b * p, k: ckk, a: weight, lda: ckk, b: cols, ldb: b * p, c: wide, ldc: b * p)
            try launch(kernel("wide_to_nchw", KernelSource.conv),
                       [.buffer(wide), .buffer(out), .buffer(biasBuffer ?? wide), .int(biasBuffer == nil ? 0 : 1), .int(Int32(n0)),
                        .int(Int32(b)), .int(Int32(s.k)), .int(Int32(p))], global: [p, b, s.k], local: nil)
        }
    }

    /// The backward plan of a CLBlast path for this shape: the workspace's forced knobs, else the
    /// path's plan (`ConvBackwardPlan.choose` for `.clblast`).
    func wideBackwardPlan(_ s: Reference.Conv2dShape, path: ConvPath = .clblast) -> ConvBackwardPlan {
        var plan = path.backwardPlan(s) ?? ConvBackwardPlan.choose(s)
        if let l = convWorkspace.weightSliceImages { plan.weightSliceImages = l }
        if let i = convWorkspace.inputGradPerImage { plan.inputPerImage = i }
        return plan
    }

    /// Per chunk of b images: gW += G · colsᵀ and, for the input gradient, cols = Wᵀ · G, gx =
    /// col2im(cols) (a gather that overwrites gx), with G the output gradient and cols the im2col of
    /// x. How the GEMMs are cut is the shape's `ConvBackwardPlan`:
    /// - grad weight in slices of L images: L = 1 is one strided-batched GEMM over the images, reading
    ///   G straight from NCHW (image i is a K×P block at i·K·P); 1 < L < b runs the slices of the
    ///   [K][B·P] wide copy of G as one strided-batched GEMM (split-K); each partial product goes to the
    ///   partials buffer and `accumulate_partials` sums them into gW; L ≥ b is one accumulating GEMM
    ///   with K = b·P over the wide copy;
    /// - grad input per image (one strided-batched GEMM reading G from NCHW) or as one GEMM over the
    ///   wide copy;
    /// - 1×1/stride 1/pad 0 (pointwise): the columns are x itself, so the per-image GEMMs read x and
    ///   write gx in NCHW, with no im2col and no col2im.
    /// The wide copy of G (`nchw_to_wide`) is made only when a GEMM reads it.
    func wideBackward(_ s: Reference.Conv2dShape, gradOut: CLBuffer, x: CLBuffer, weight: CLBuffer, gradWeight: CLBuffer,
                      gradInput: CLBuffer?, path: ConvPath) throws {
        switch path {
        case .winograd, .winogradImplicit:
            // Winograd grad input; the grad weight by conv_cpu.cl (chunked or implicit) or CLBlast.
            if let gradInput { try winogradBackwardInput(s, gradOut: gradOut, weight: weight, gradInput: gradInput) }
            let gemm: ConvPath = device.info.isGPU ? .clblast : path == .winograd ? .cpuKernels : .cpuImplicit
            return try wideBackward(s, gradOut: gradOut, x: x, weight: weight, gradWeight: gradWeight, gradInput: nil, path: gemm)
        case .winogradFull:
            // Winograd grad input and grad weight (CPU drivers with the local memory for it; elsewhere
            // `.winogradImplicit`'s or, on GPUs, `.winograd`'s grad weight).
            guard winogradWeightGradApplies(s) else {
                return try wideBackward(s, gradOut: gradOut, x: x, weight: weight, gradWeight: gradWeight, gradInput: gradInput,
                                        path: device.info.isGPU ? .winograd : .winogradImplicit)
            }
            if let gradInput { try winogradBackwardInput(s, gradOut: gradOut, weight: weight, gradInput: gradInput) }
            return try winogradWeightGrad(s, gradOut: gradOut, x: x, gradWeight: gradWeight)
        case .cpuKernels, .cpuImplicit:
            return try cpuBackward(s, gradOut: gradOut, x: x, weight: weight, gradWeight: gradWeight, gradInput: gradInput,
                                   implicit: implicitMode(path))
        default: break
        }
        let p = s.outH * s.outW, ckk = s.c * s.kh * s.kw, kp = s.k * p
        let plan = wideBackwardPlan(s, path: path)
        let pointwise = isPointwise(s)
        let chunk = wideImagesPerChunk(s)
        let cols = try convWorkspace.columnBuffer(bytes: chunk * ckk * p * 4, context: device)
        let wide = try convWorkspace.wideBuffer(bytes: chunk * kp * 4, context: device)
        for n0 in stride(from: 0, to: s.n, by: chunk) {
            let b = min(chunk, s.n - n0), bp = b * p
            let slice = min(max(plan.weightSliceImages, 1), b)
            let inputPerImage = plan.inputPerImage || pointwise
            if slice > 1 || (gradInput != nil && !inputPerImage) {
                try launch(kernel("nchw_to_wide", KernelSource.conv),
                           [.buffer(gradOut), .buffer(wide), .int(Int32(n0)), .int(Int32(b)), .int(Int32(s.k)), .int(Int32(p))],
                           global: [p, b, s.k], local: nil)
            }
            // The columns of image i: x itself for a pointwise conv read per image, else im2col.
            let direct = pointwise && slice == 1
            if !direct { try enqueueIm2colWide(s, x: x, cols: cols, n0: n0, b: b) }
            let (colBuf, colOff, colLd, colStride) = direct ? (x, n0 * s.c * p, p, s.c * p) : (cols, 0, bp, p)
            if slice == 1 || slice < b {
                let full = b / slice, rest = b - full * slice, parts = full + (rest > 0 ? 1 : 0)
                let partial = try convWorkspace.partialBuffer(bytes: parts * s.k * ckk * 4, context: device)
                if slice == 1 {
                    try device.enqueueSgemmStridedBatched(.no, .yes, m: s.k, n: ckk, k: p, a: gradOut, aOffset: n0 * kp, lda: p, strideA: kp,
                                                          b: colBuf, bOffset: colOff, ldb: colLd, strideB: colStride,
                                                          c: partial, ldc: ckk, strideC: s.k * ckk, batch: b)
                } else {
                    let sk = slice * p
                    try device.enqueueSgemmStridedBatched(.no, .yes, m: s.k, n: ckk, k: sk, a: wide, lda: bp, strideA: sk,
                                                          b: cols, ldb: bp, strideB: sk, c: partial, ldc: ckk, strideC: s.k * ckk,
                                                          batch: full)
                    if rest > 0 {
                        try device.enqueueSgemm(.no, .yes, m: s.k, n: ckk, k: rest * p, a: wide, aOffset: full * sk, lda: bp,
                                                b: cols, bOffset: full * sk, ldb: bp, c: partial, cOffset: full * s.k * ckk, ldc: ckk)
                    }
                }
                try launch(kernel("accumulate_partials", KernelSource.conv),
                           [.buffer(partial), .buffer(gradWeight), .int(Int32(s.k * ckk)), .int(Int32(parts))], count: s.k * ckk)
            } else {
                try device.enqueueSgemm(.no, .yes, m: s.k, n: ckk, k: bp, a: wide, lda: bp, b: cols, ldb: bp, beta: 1,
                                        c: gradWeight, ldc: ckk)
            }
            guard let gradInput else { continue }
            if pointwise {
                // gx[n] (C×P) = Wᵀ (C×K) · G[n] (K×P): no columns, no col2im.
                try device.enqueueSgemmStridedBatched(.yes, .no, m: s.c, n: p, k: s.k, a: weight, lda: s.c, strideA: 0,
                                                      b: gradOut, bOffset: n0 * kp, ldb: p, strideB: kp,
                                                      c: gradInput, cOffset: n0 * s.c * p, ldc: p, strideC: s.c * p, batch: b)
                continue
            }
            if inputPerImage {
                try device.enqueueSgemmStridedBatched(.yes, .no, m: ckk, n: p, k: s.k, a: weight, lda: ckk, strideA: 0,
                                                      b: gradOut, bOffset: n0 * kp, ldb: p, strideB: kp,
                                                      c: cols, ldc: bp, strideC: p, batch: b)
            } else {
                try device.enqueueSgemm(.yes, .no, m: ckk, n: bp, k: s.k, a: weight, lda: ckk, b: wide, ldb: bp, c: cols, ldc: bp)
            }
            try enqueueCol2imWide(s, cols: cols, colOffset: 0, gx: gradInput, n0: n0, b: b)
        }
    }
}
