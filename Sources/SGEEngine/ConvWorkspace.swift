import Foundation
import SGEOpenCL

/// How the OpenCL backend runs a convolution. Under `.wide` (the default) every convolution goes
/// through the wide layout, 1×1 ones included; under the per-image algorithms a 1×1, stride-1,
/// unpadded convolution is one strided-batched GEMM on the tensors.
public enum ConvAlgorithm: String, CaseIterable, Sendable {
    /// CLBlast im2col per image into a chunk of column matrices, then one strided-batched GEMM
    /// (grad weight: one accumulating GEMM per image; grad input: CLBlast col2im per image).
    case im2colBatchedGemm
    /// CLBlast im2col per image, then one GEMM per image.
    case im2colGemm
    /// A chunk of images as one column matrix [C·KH·KW][B·OH·OW] (our im2col_wide kernel), so
    /// each direction is one GEMM per chunk; permute kernels move between NCHW and [K][B·P].
    case wide
}

/// Scratch device memory and settings for convolutions on one `OpenCLBackend`: the im2col column
/// buffer is cached and grown on demand so a training step does not reallocate it on every call.
public final class ConvWorkspace: @unchecked Sendable {
    /// The column buffer's cap in bytes: the batch is processed in chunks of images whose
    /// (C·KH·KW) × (OH·OW) column matrices fit under it (at least one image per chunk, so a single
    /// image larger than the cap still runs). Tests lower it to force chunking.
    public var columnLimitBytes: Int = 64 << 20
    /// The convolution algorithm. Default `.wide` (`SGE_CONV_ALGORITHM` overrides it); the
    /// measurements behind the choice are in docs/performance/pocl.md.
    public var algorithm: ConvAlgorithm = ConvAlgorithm(rawValue: ProcessInfo.processInfo.environment["SGE_CONV_ALGORITHM"] ?? "")
        ?? .wide

    /// The wide layout's im2col and col2im kernels: per element (`im2col_wide`/`col2im_wide`, true)
    /// or per contiguous block (`im2col_rows`: a tap's OH×OW block per work-item; `col2im_rows`: an
    /// image channel's plane per work-item; false); nil picks by device: per element on GPUs, blocks
    /// on CPU drivers (on PoCL `sge bench conv` measured the 3×3 64→64 wide forward at 8×56×56 27.4 →
    /// 18.4 ms with the block im2col).
    public var im2colPerElement: Bool?

    /// Per-image backward GEMMs only up to this much work each (K·C·KH·KW·OH·OW multiply-adds).
    public static var perImageMaxWork = 1 << 23
    /// Planes (OH·OW) at least this large run the wide backward GEMMs per image (see wideBackward);
    /// `SGE_CONV_PER_IMAGE_MIN_PLANE` overrides it for measurements.
    public static var perImageMinPlane = Int(ProcessInfo.processInfo.environment["SGE_CONV_PER_IMAGE_MIN_PLANE"] ?? "") ?? 196

    private var columns: CLBuffer?
    private var wideScratch: CLBuffer?
    private var partials: CLBuffer?

    public init() {}

    /// Bytes currently held by the cached column buffer.
    public var allocatedBytes: Int { (columns?.bytes ?? 0) + (wideScratch?.bytes ?? 0) + (partials?.bytes ?? 0) }

    /// The column buffer, at least `bytes` long (reallocated only when it must grow).
    func columnBuffer(bytes: Int, context: CLContext) throws -> CLBuffer { try grown(&columns, bytes, context) }

    /// The [K][B·P] scratch of the wide layout, at least `bytes` long.
    func wideBuffer(bytes: Int, context: CLContext) throws -> CLBuffer { try grown(&wideScratch, bytes, context) }

    /// Per-image partial weight gradients [B][K][C·KH·KW], at least `bytes` long.
    func partialBuffer(bytes: Int, context: CLContext) throws -> CLBuffer { try grown(&partials, bytes, context) }

    /// `slot`'s buffer if it holds `bytes`, else a bigger one (the old one is dropped first).
    private func grown(_ slot: inout CLBuffer?, _ bytes: Int, _ context: CLContext) throws -> CLBuffer {
        if let c = slot, c.bytes >= bytes { return c }
        slot = nil
        let c = try context.buffer(bytes: bytes)
        slot = c
        return c
    }

    /// Frees the cached buffers.
    public func release() {
        partials = nil
        columns = nil
        wideScratch = nil
    }
}
