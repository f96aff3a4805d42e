import SGEKernels
import SGEOpenCL
import SGEReference

/// One operand of conv_cpu.cl's kernels: element (n, row, p) at offset + n·image + row·ld + p, so
/// an NCHW tensor (image = rows·P, ld = P) and the wide column matrix (image = P, ld = B·P) are
/// read in place.
struct ConvOperand {
    var buffer: CLBuffer
    var offset: Int
    var image: Int
    var ld: Int

    /// Images n0 ..< of an NCHW tensor with `rows` channels of `plane` positions.
    static func nchw(_ buffer: CLBuffer, n0: Int, rows: Int, plane: Int) -> ConvOperand {
        ConvOperand(buffer: buffer, offset: n0 * rows * plane, image: rows * plane, ld: plane)
    }

    /// The wide column matrix of a chunk of `batch` images.
    static func wide(_ buffer: CLBuffer, batch: Int, plane: Int) -> ConvOperand {
        ConvOperand(buffer: buffer, offset: 0, image: plane, ld: batch * plane)
    }

    var args: [CLKernel.Arg] { [.buffer(buffer), .int(Int32(offset)), .int(Int32(image)), .int(Int32(ld))] }
}

/// The wide algorithm on CPU drivers (`ConvWorkspace.cpuKernels`): conv_cpu.cl's kernels instead of
/// CLBlast, reading and writing NCHW directly (no nchw_to_wide or wide_to_nchw pass).
extension OpenCLBackend {
    /// The column (and partials) cap of this path: the smaller of the workspace's two caps.
    var cpuColumnLimit: Int { min(convWorkspace.columnLimitBytes, convWorkspace.cpuColumnLimitBytes) }

    /// How the weight gradient's reduction (`batch` images × `plane` positions) is cut: `pieces`
    /// pieces of `pieceLen` positions per image, in groups of `group` images (one work-item each).
    struct WeightGradSplit {
        var pieces: Int, pieceLen: Int, group: Int
        let plane: Int, batch: Int
        var groups: Int { (batch + group - 1) / group }
        var parts: Int { groups * pieces }

        /// `count` pieces of a multiple of 16 positions (fewer when rounding covers the plane sooner).
        mutating func split(_ count: Int) {
            pieceLen = ((plane + count - 1) / count + 15) / 16 * 16
            pieces = (plane + pieceLen - 1) / pieceLen
        }
    }

    /// The reduction's cut for gW (M×N): a work-item covers Q positions (whole images of a small
    /// plane, or a piece of a large one) with (M + N)·Q ≈ `cpuCacheFloats` (512 KB), so the rows it
    /// re-reads for every 4×4 output tile stay in L2; at least 8 work-items where the batch allows;
    /// the M×N partials under `partialsCap` (default: the column cap).
    func weightGradSplit(m: Int, n: Int, batch: Int, plane: Int, partialsCap: Int? = nil) -> WeightGradSplit {
        let cap = partialsCap ?? cpuColumnLimit
        // At least 256 positions per piece (the budget allowing), else writing and summing the M×N
        // partials costs more than computing them.
        let budget = convWorkspace.cpuCacheFloats
        let q = max(16, min(256, budget), min(8192, budget / (m + n)))
        var sp = WeightGradSplit(pieces: 1, pieceLen: plane, group: 1, plane: plane, batch: batch)
        if plane > q { sp.split((plane + q - 1) / q) } else { sp.group = max(1, q / plane) }
        while sp.group > 1, sp.parts < 8 { sp.group = (sp.group + 1) / 2 }
        // Large M×N: fewer, longer pieces.
        while sp.parts > 1, sp.parts * m * n * 4 > cap {
            if sp.pieces > 1 { sp.split((sp.pieces + 1) / 2) } else { sp.group *= 2 }
        }
        return sp
    }

    /// gW (M×N) += Σ_{n < batch, p < plane} A(n, m, p) · B(n, r, p): conv_gw_partials over the
    /// pieces of `weightGradSplit`, then accumulate_partials.
    func enqueueWeightGradCPU(a: ConvOperand, b: ConvOperand, gradWeight: CLBuffer, m: Int, n: Int, batch: Int, plane: Int) throws {
        let sp = weightGradSplit(m: m, n: n, batch: batch, plane: plane)
        let partial = try convWorkspace.partialBuffer(bytes: sp.parts * m * n * 4, context: device)
        try launch(kernel("conv_gw_partials", KernelSource.convCPU),
                   a.args + b.args + [.buffer(partial), .int(Int32(m)), .int(Int32(n)), .int(Int32(batch)), .int(Int32(plane)),
                                      .int(Int32(sp.group)), .int(Int32(sp.pieceLen))], global: [sp.pieces, sp.groups], local: [1, 1])
        try launch(kernel("accumulate_partials", KernelSource.conv),
                   [.buffer(partial), .buffer(gradWeight), .int(Int32(m * n)), .int(Int32(sp.parts))], count: m * n)
    }

    /// C(n, m, p) = Σ_{k < K} A(m, k) · B(n, k, p) (+ bias[m]) for n < batch, with A(m, k) =
    /// a[m·aM + k·aK]: conv_small_a over chunks of positions whose K rows of B fit in half of
    /// `cpuCacheFloats` (256 KB).
    func enqueueSmallA(_ a: CLBuffer, aM: Int, aK: Int, b: ConvOperand, c: ConvOperand, bias: CLBuffer?,
                       m: Int, k: Int, batch: Int, plane: Int) throws {
        var chunk = max(16, min(4096, convWorkspace.cpuCacheFloats / 2 / k / 16 * 16))
        while chunk > 16, batch * ((plane + chunk - 1) / chunk) < 8 { chunk = max(16, chunk / 2 / 16 * 16) }
        let chunks = (plane + chunk - 1) / chunk
        try launch(kernel("conv_small_a", KernelSource.convCPU),
                   [.buffer(a), .int(Int32(aM)), .int(Int32(aK))] + b.args + c.args
                   + [.buffer(bias ?? a), .int(bias == nil ? 0 : 1), .int(Int32(m)), .int(Int32(k)), .int(Int32(plane)), .int(Int32(chunk))],
                   global: [chunks, batch], local: [1, 1])
    }

    /// Runs `body(n0, b, cols)` per chunk of b images with cols = im2col of the chunk in the wide
    /// layout (with `im2col` false: the chunk's column buffer, unwritten), or x itself in NCHW when
    /// the convolution is pointwise (one chunk, no im2col).
    private func forEachColumnChunk(_ s: Reference.Conv2dShape, x: CLBuffer, im2col: Bool = true,
                                    _ body: (_ n0: Int, _ b: Int, _ cols: ConvOperand) throws -> Void) throws {
        let p = s.outH * s.outW
        if isPointwise(s) { return try body(0, s.n, .nchw(x, n0: 0, rows: s.c, plane: p)) }
        let perImage = s.c * s.kh * s.kw * p * 4
        let chunk = max(1, min(s.n, cpuColumnLimit / max(perImage, 1)))
        let cols = try convWorkspace.columnBuffer(bytes: chunk * perImage, context: device)
        for n0 in stride(from: 0, to: s.n, by: chunk) {
            let b = min(chunk, s.n - n0)
            if im2col { try enqueueIm2colWide(s, x: x, cols: cols, n0: n0, b: b) }
            try body(n0, b, .wide(cols, batch: b, plane: p))
        }
    }

    /// The wide forward with conv_cpu.cl: the implicit GEMM where it applies under `implicit` (one
    /// launch; `implicitApplies`), else per chunk, out = W · cols + bias, written in NCHW.
    func cpuForward(_ s: Reference.Conv2dShape, x: CLBuffer, weight: CLBuffer, out: CLBuffer, bias: CLBuffer?, implicit: Bool?) throws {
        if implicitApplies(s, .forward, mode: implicit), try implicitForward(s, x: x, weight: weight, out: out, bias: bias) { return }
        let p = s.outH * s.outW, ckk = s.c * s.kh * s.kw
        try forEachColumnChunk(s, x: x) { n0, b, cols in
            try enqueueSmallA(weight, aM: ckk, aK: 1, b: cols, c: .nchw(out, n0: n0, rows: s.k, plane: p), bias: bias,
                              m: s.k, k: ckk, batch: b, plane: p)
        }
    }

    /// The wide backward with conv_cpu.cl: gW and gx each by the implicit GEMM where it applies,
    /// else per chunk, gW += G · colsᵀ, then cols = Wᵀ · G and gx = col2im(cols) (when pointwise, gx
    /// = Wᵀ · G directly), with G read from NCHW.
    func cpuBackward(_ s: Reference.Conv2dShape, gradOut: CLBuffer, x: CLBuffer, weight: CLBuffer, gradWeight: CLBuffer,
                     gradInput: CLBuffer?, implicit: Bool?) throws {
        let p = s.outH * s.outW, ckk = s.c * s.kh * s.kw
        let pointwise = isPointwise(s)
        let weightDone = try implicitApplies(s, .weightGrad, mode: implicit)
            && implicitWeightGrad(s, gradOut: gradOut, x: x, gradWeight: gradWeight)
        var inputDone = gradInput == nil
        if let gradInput, implicitApplies(s, .inputGrad, mode: implicit) {
            inputDone = try implicitInputGrad(s, gradOut: gradOut, weight: weight, gradInput: gradInput)
        }
        if weightDone && inputDone { return }
        try forEachColumnChunk(s, x: x, im2col: !weightDone) { n0, b, cols in
            let g = ConvOperand.nchw(gradOut, n0: n0, rows: s.k, plane: p)
            if !weightDone { try enqueueWeightGradCPU(a: g, b: cols, gradWeight: gradWeight, m: s.k, n: ckk, batch: b, plane: p) }
            guard let gradInput, !inputDone else { return }
            // Wᵀ: A(r, k) = W[k][r].
            try enqueueSmallA(weight, aM: 1, aK: ckk, b: g, c: pointwise ? .nchw(gradInput, n0: n0, rows: s.c, plane: p) : cols,
                              bias: nil, m: ckk, k: s.k, batch: b, plane: p)
            if !pointwise { try enqueueCol2imWide(s, cols: cols.buffer, colOffset: 0, gx: gradInput, n0: n0, b: b) }
        }
    }
}
