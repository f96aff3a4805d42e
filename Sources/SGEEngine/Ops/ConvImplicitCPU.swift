import SGEKernels
import SGEOpenCL
import SGEReference

/// The three products of a convolution, for choosing the implicit GEMM per product.
enum ConvProduct {
    case forward, weightGrad, inputGrad
}

/// The wide algorithm on CPU drivers as an implicit GEMM (`ConvWorkspace.cpuImplicit`,
/// conv_implicit_cpu.cl): every work-item gathers the im2col columns of its own positions into local
/// memory and runs conv_cpu.cl's register-blocked product from there. Per convolution: forward one
/// launch, weight gradient two (partials, then accumulate_partials), input gradient one (a gather:
/// each input position sums the taps that hit it), where the chunked path makes two launches per
/// chunk of columns forward and five backward.
extension OpenCLBackend {
    /// Whether the implicit GEMM is used for this product of this shape under `mode` (false: never,
    /// true: wherever it fits; it still falls back when the local memory is too small; see the
    /// `implicit…` functions). Never for pointwise convolutions, whose columns are x itself (no
    /// im2col to save). By shape (mode nil): forward and
    /// weight gradient always; the input gradient at stride 1 only (at stride s the gather's rows
    /// are mostly zeros: s² times the multiply-adds of cols = Wᵀ·G plus col2im).
    func implicitApplies(_ s: Reference.Conv2dShape, _ direction: ConvProduct, mode: Bool?) -> Bool {
        guard !isPointwise(s), mode != false else { return false }
        if mode == true { return true }
        switch direction {
        case .forward, .weightGrad: return true
        case .inputGrad: return s.strideH == 1 && s.strideW == 1
        }
    }

    /// conv_implicit_cpu.cl's kernels with this convolution's geometry compiled in.
    private func implicitKernel(_ name: String, _ s: Reference.Conv2dShape) throws -> CLKernel {
        try kernel(name, KernelSource.convImplicitCPU,
                   ["KH": "\(s.kh)", "KW": "\(s.kw)", "SH": "\(s.strideH)", "SW": "\(s.strideW)", "PH": "\(s.padH)", "PW": "\(s.padW)",
                    "DH": "\(s.dilationH)", "DW": "\(s.dilationW)"])
    }

    /// Local memory a work-group may use, in floats.
    private var localFloats: Int { Int(device.info.localMemory) / 4 }

    /// Positions per work-item (`chunk`) and the local row length (`ld`) of the implicit product
    /// over `rows` gathered rows of a `plane`-position output: conv_small_a's chunk (the rows in half
    /// of `cpuCacheFloats`, at least 8 work-items where the batch allows), capped by the local
    /// memory; nil when 16 positions of the rows do not fit.
    private func implicitChunk(rows: Int, plane: Int, batch: Int) -> (chunk: Int, ld: Int)? {
        let cap = localFloats / rows / 16 * 16
        guard cap >= 16 else { return nil }
        var chunk = max(16, min(4096, convWorkspace.cpuCacheFloats / 2 / rows / 16 * 16))
        while chunk > 16, batch * ((plane + chunk - 1) / chunk) < 8 { chunk = max(16, chunk / 2 / 16 * 16) }
        chunk = min(chunk, cap)
        return (chunk, min(chunk, (plane + 15) / 16 * 16))
    }

    /// out = W · im2col(x) + bias in one launch of conv_implicit_fwd; false (nothing enqueued) when
    /// the columns of 16 positions do not fit in local memory.
    func implicitForward(_ s: Reference.Conv2dShape, x: CLBuffer, weight: CLBuffer, out: CLBuffer, bias: CLBuffer?) throws -> Bool {
        let p = s.outH * s.outW
        guard let (chunk, ld) = implicitChunk(rows: s.c * s.kh * s.kw, plane: p, batch: s.n) else { return false }
        try launch(implicitKernel("conv_implicit_fwd", s),
                   [.buffer(x), .buffer(weight), .buffer(out), .buffer(bias ?? weight), .int(bias == nil ? 0 : 1), .int(Int32(s.k)),
                    .int(Int32(s.c)), .int(Int32(s.h)), .int(Int32(s.w)), .int(Int32(s.outH)), .int(Int32(s.outW)), .int(Int32(chunk)),
                    .local(s.c * s.kh * s.kw * ld * 4), .int(Int32(ld))],
                   global: [(p + chunk - 1) / chunk, s.n], local: [1, 1])
        return true
    }

    /// gx = the gather of Wᵀ · G over the taps hitting each input position, in one launch of
    /// conv_implicit_gi (overwrites gx); false when 16 positions' rows (K·KH·KW) do not fit.
    func implicitInputGrad(_ s: Reference.Conv2dShape, gradOut: CLBuffer, weight: CLBuffer, gradInput: CLBuffer) throws -> Bool {
        let plane = s.h * s.w
        guard let (chunk, ld) = implicitChunk(rows: s.k * s.kh * s.kw, plane: plane, batch: s.n) else { return false }
        try launch(implicitKernel("conv_implicit_gi", s),
                   [.buffer(gradOut), .buffer(weight), .buffer(gradInput), .int(Int32(s.c)), .int(Int32(s.k)), .int(Int32(s.h)),
                    .int(Int32(s.w)), .int(Int32(s.outH)), .int(Int32(s.outW)), .int(Int32(chunk)),
                    .local(s.k * s.kh * s.kw * ld * 4), .int(Int32(ld))],
                   global: [(plane + chunk - 1) / chunk, s.n], local: [1, 1])
        return true
    }

    /// gW += G · im2col(x)ᵀ over the whole batch: conv_gw_implicit over `weightGradSplit`'s pieces
    /// (groups of images shrunk, then pieces split, until a work-item's columns fit in local
    /// memory), then accumulate_partials. False (nothing enqueued) when they cannot fit, or when the
    /// extra pieces would take the partials over `columnLimitBytes`.
    func implicitWeightGrad(_ s: Reference.Conv2dShape, gradOut: CLBuffer, x: CLBuffer, gradWeight: CLBuffer) throws -> Bool {
        let p = s.outH * s.outW, ckk = s.c * s.kh * s.kw
        // The partials may reach the general column cap (64 MiB), not the 4 MiB of the chunked path:
        // that path cuts each chunk (at 3×3 64→64, 56×56: one image) under 4 MiB, so its pieces are
        // L2-sized; over the whole batch the same pieces need more partials (there 104 of 147 KB).
        // Merging pieces to stay under 4 MiB made gW 1.6× slower (bench conv, 3 rounds).
        var sp = weightGradSplit(m: s.k, n: ckk, batch: s.n, plane: p, partialsCap: convWorkspace.columnLimitBytes)
        let fitted = sp.parts
        while sp.group * sp.pieceLen * ckk > localFloats {
            if sp.group > 1 {
                sp.group = (sp.group + 1) / 2
            } else if sp.pieceLen > 16 {
                sp.split(sp.pieces * 2)
            } else {
                return false
            }
        }
        if sp.parts > fitted, sp.parts * s.k * ckk * 4 > convWorkspace.columnLimitBytes { return false }
        let partial = try convWorkspace.partialBuffer(bytes: sp.parts * s.k * ckk * 4, context: device)
        try launch(implicitKernel("conv_gw_implicit", s),
                   [.buffer(gradOut), .buffer(x), .buffer(partial), .int(Int32(s.k)), .int(Int32(s.c)), .int(Int32(s.n)),
                    .int(Int32(s.h)), .int(Int32(s.w)), .int(Int32(s.outH)), .int(Int32(s.outW)), .int(Int32(sp.group)),
                    .int(Int32(sp.pieceLen)), .local(sp.group * min(sp.pieceLen, p) * ckk * 4)],
                   global: [sp.pieces, sp.groups], local: [1, 1])
        try launch(kernel("accumulate_partials", KernelSource.conv),
                   [.buffer(partial), .buffer(gradWeight), .int(Int32(s.k * ckk)), .int(Int32(sp.parts))], count: s.k * ckk)
        return true
    }
}
