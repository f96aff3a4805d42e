import COpenCL
import Foundation

/// Thin wrappers over the CLBlast routines sge uses, on this context's queue. All matrices are
/// row-major; offsets and leading dimensions are in elements. Each call only enqueues work.
extension CLContext {
    public enum Transpose { case no, yes
        var blast: CLBlastTranspose { self == .no ? CLBlastTransposeNo : CLBlastTransposeYes }
    }

    /// C = alpha * op(A) * op(B) + beta * C with op(A) m×k, op(B) k×n, C m×n (row-major).
    ///
    /// CLBlast's indirect GEMM copies A, B and C into padded (and transposed) temporaries. Left to
    /// itself it allocates and frees them on every call; here they come from this context's buffer
    /// pool (CLBlastSgemmWithTempBuffer), so a training step reuses them instead of allocating (on
    /// a CPU driver, page-faulting) hundreds of MB per large GEMM.
    public func enqueueSgemm(_ ta: Transpose, _ tb: Transpose, m: Int, n: Int, k: Int, alpha: Float = 1,
                             a: CLBuffer, aOffset: Int = 0, lda: Int, b: CLBuffer, bOffset: Int = 0, ldb: Int,
                             beta: Float = 0, c: CLBuffer, cOffset: Int = 0, ldc: Int) throws {
        var q: cl_command_queue? = queue
        var event: cl_event?
        defer { recordBlast("clblast:gemm", event) }
        var tempBytes = 0
        let what = "CLBlastSgemm(m: \(m), n: \(n), k: \(k))"
        try checkBlast(CLBlastSGemmTempBufferSize(CLBlastLayoutRowMajor, ta.blast, tb.blast, m, n, k, aOffset, lda, bOffset, ldb,
                                                  cOffset, ldc, &q, &tempBytes), "CLBlastSGemmTempBufferSize for " + what)
        // The temporary goes back to the pool when this call returns; the in-order queue runs its
        // next user after this GEMM.
        let temp = tempBytes > 0 ? try buffer(bytes: tempBytes) : nil
        try checkBlast(CLBlastSgemmWithTempBuffer(CLBlastLayoutRowMajor, ta.blast, tb.blast, m, n, k, alpha, a.mem, aOffset, lda,
                                                  b.mem, bOffset, ldb, beta, c.mem, cOffset, ldc, &q, &event, temp?.mem),
                       what)
    }

    /// `batch` GEMMs whose matrices are `strideA/B/C` elements apart.
    public func enqueueSgemmStridedBatched(_ ta: Transpose, _ tb: Transpose, m: Int, n: Int, k: Int, alpha: Float = 1,
                                           a: CLBuffer, aOffset: Int = 0, lda: Int, strideA: Int,
                                           b: CLBuffer, bOffset: Int = 0, ldb: Int, strideB: Int,
                                           beta: Float = 0, c: CLBuffer, cOffset: Int = 0, ldc: Int, strideC: Int,
                                           batch: Int) throws {
        var q: cl_command_queue? = queue
        var event: cl_event?
        defer { recordBlast("clblast:gemmStridedBatched", event) }
        try checkBlast(CLBlastSgemmStridedBatched(CLBlastLayoutRowMajor, ta.blast, tb.blast, m, n, k, alpha,
                                                  a.mem, aOffset, lda, strideA, b.mem, bOffset, ldb, strideB,
                                                  beta, c.mem, cOffset, ldc, strideC, batch, &q, &event),
                       "CLBlastSgemmStridedBatched(m: \(m), n: \(n), k: \(k), batch: \(batch))")
    }

    /// Geometry of a 2-D convolution over one image.
    public struct ConvGeometry: Hashable, Sendable {
        public var channels, height, width, kernelH, kernelW, padH, padW, strideH, strideW, dilationH, dilationW: Int
        public init(channels: Int, height: Int, width: Int, kernelH: Int, kernelW: Int, padH: Int, padW: Int,
                    strideH: Int, strideW: Int, dilationH: Int, dilationW: Int) {
            (self.channels, self.height, self.width) = (channels, height, width)
            (self.kernelH, self.kernelW, self.padH, self.padW) = (kernelH, kernelW, padH, padW)
            (self.strideH, self.strideW, self.dilationH, self.dilationW) = (strideH, strideW, dilationH, dilationW)
        }
        public var outHeight: Int { (height + 2 * padH - dilationH * (kernelH - 1) - 1) / strideH + 1 }
        public var outWidth: Int { (width + 2 * padW - dilationW * (kernelW - 1) - 1) / strideW + 1 }
    }

    /// im2col of one image at `imOffset` into a (C·KH·KW) × (OH·OW) matrix at `colOffset`.
    public func enqueueIm2col(_ g: ConvGeometry, im: CLBuffer, imOffset: Int, col: CLBuffer, colOffset: Int) throws {
        try enqueueColumns(g, CLBlastSim2col, "CLBlastSim2col", label: "clblast:im2col", from: im, fromOffset: imOffset, to: col, toOffset: colOffset)
    }

    /// col2im: accumulates a (C·KH·KW) × (OH·OW) matrix back into one image (the image is added to).
    public func enqueueCol2im(_ g: ConvGeometry, col: CLBuffer, colOffset: Int, im: CLBuffer, imOffset: Int) throws {
        try enqueueColumns(g, CLBlastScol2im, "CLBlastScol2im", label: "clblast:col2im", from: col, fromOffset: colOffset, to: im, toOffset: imOffset)
    }

    /// CLBlastSim2col and CLBlastScol2im take the same arguments: geometry, source, destination.
    private typealias ColumnsCall = (CLBlastKernelMode, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int,
                                     cl_mem?, Int, cl_mem?, Int, UnsafeMutablePointer<cl_command_queue?>?,
                                     UnsafeMutablePointer<cl_event?>?) -> CLBlastStatusCode

    private func enqueueColumns(_ g: ConvGeometry, _ call: ColumnsCall, _ callName: String, label: String, from: CLBuffer,
                                fromOffset: Int, to: CLBuffer, toOffset: Int) throws {
        var q: cl_command_queue? = queue
        var event: cl_event?
        defer { recordBlast(label, event) }
        try checkBlast(call(CLBlastKernelModeCrossCorrelation, g.channels, g.height, g.width, g.kernelH, g.kernelW,
                            g.padH, g.padW, g.strideH, g.strideW, g.dilationH, g.dilationW,
                            from.mem, fromOffset, to.mem, toOffset, &q, &event), callName)
    }

    /// Replaces CLBlast's tuning parameters for `kernel` (e.g. "Xgemm") in single precision on this device.
    public func overrideCLBlastParameters(kernel: String, _ parameters: [String: Int]) throws {
        let names = parameters.keys.sorted()
        var values = names.map { parameters[$0]! }
        var cNames = names.map { strdup($0) }
        defer { cNames.forEach { free($0) } }
        let status = cNames.withUnsafeMutableBufferPointer { np -> CLBlastStatusCode in
            np.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: names.count) { namePtr in
                CLBlastOverrideParameters(info.deviceID, kernel, CLBlastPrecisionSingle, names.count, namePtr, &values)
            }
        }
        try checkBlast(status, "CLBlastOverrideParameters(\(kernel))")
    }

    /// Hands a CLBlast call's event to the recorder (or releases it).
    private func recordBlast(_ name: String, _ event: cl_event?) {
        guard let event else { return }
        let e = CLEvent(event)
        recorder?.launched(name, e)
    }
}
