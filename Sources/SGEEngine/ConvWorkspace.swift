import Foundation
import SGEOpenCL
import SGEReference

/// How the OpenCL backend runs a convolution. Under `.wide` (the default) every convolution goes
/// through the wide layout, 1×1 ones included; under the per-image algorithms a 1×1, stride-1,
/// unpadded convolution is one strided-batched GEMM on the tensors.
public enum ConvAlgorithm: String, CaseIterable, Sendable {
    /// CLBlast im2col per image into a chunk of column matrices, then one strided-batched GEMM
    /// (grad weight: one accumulating GEMM per image; grad input: CLBlast col2im per image).
    case im2colBatchedGemm
    /// CLBlast im2col per image, then one GEMM per image.
    case im2colGemm
    /// A chunk of images as one column matrix [C·KH·KW][B·OH·OW] (our im2col kernels). On CPU
    /// drivers conv_cpu.cl's kernels do the GEMMs, reading and writing NCHW; on GPUs CLBlast's
    /// GEMMs, cut per shape by `ConvBackwardPlan`, with permute kernels between NCHW and [K][B·P].
    case wide
}

/// How the wide backward cuts its GEMMs for one convolution shape (see `OpenCLBackend.wideBackward`).
public struct ConvBackwardPlan: Hashable, Sendable {
    /// Images per grad-weight GEMM slice: 1 per image (reads the output gradient in NCHW), a value
    /// ≥ the chunk one GEMM over the chunk, between: split-K over slices of that many images.
    public var weightSliceImages: Int
    /// The grad-input GEMM per image (reads the output gradient in NCHW) or as one GEMM per chunk.
    public var inputPerImage: Bool

    public init(weightSliceImages: Int, inputPerImage: Bool) {
        (self.weightSliceImages, self.inputPerImage) = (weightSliceImages, inputPerImage)
    }

    /// The plan by shape: GEMMs per image for planes of at least `perImageMinPlane` positions up to
    /// `perImageMaxWork` multiply-adds per image, else one GEMM per chunk.
    static func choose(_ s: Reference.Conv2dShape) -> ConvBackwardPlan {
        let p = s.outH * s.outW, ckk = s.c * s.kh * s.kw
        let perImage = p >= ConvWorkspace.perImageMinPlane && s.k * ckk * p <= ConvWorkspace.perImageMaxWork
        return ConvBackwardPlan(weightSliceImages: perImage ? 1 : Int.max, inputPerImage: perImage)
    }
}

/// Scratch device memory and settings for convolutions on one `OpenCLBackend`: the im2col column
/// buffer is cached and grown on demand so a training step does not reallocate it on every call.
public final class ConvWorkspace: @unchecked Sendable {
    /// The column buffer's cap in bytes: the batch is processed in chunks of images whose
    /// (C·KH·KW) × (OH·OW) column matrices fit under it (at least one image per chunk, so a single
    /// image larger than the cap still runs). Tests lower it to force chunking.
    public var columnLimitBytes: Int = 64 << 20
    /// The column cap of conv_cpu.cl's path (the smaller of the two applies), so the columns that
    /// im2col writes are still in cache when the kernels read them: the small model's step measured
    /// 395 vs 382 images/s median (4 vs 64 MiB, 6 interleaved pairs, 5 won). `SGE_CONV_CPU_COLUMN_LIMIT_KB` sets it.
    public var cpuColumnLimitBytes: Int = (Int(ProcessInfo.processInfo.environment["SGE_CONV_CPU_COLUMN_LIMIT_KB"] ?? "") ?? 4096) << 10
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

    /// The wide algorithm's GEMMs: conv_cpu.cl's kernels (true) or CLBlast (false); nil: the kernels
    /// on CPU drivers, CLBlast on GPUs. `SGE_CONV_CPU_KERNELS=0|1` sets it.
    public var cpuKernels: Bool? = ProcessInfo.processInfo.environment["SGE_CONV_CPU_KERNELS"].flatMap { Int($0) }.map { $0 != 0 }
    /// conv_cpu.cl's path as an implicit GEMM (conv_implicit_cpu.cl: each work-item gathers its own
    /// positions' columns into local memory; one launch per forward and per input gradient, two per
    /// weight gradient, no column buffer): true wherever it runs (the columns of one 16-position block
    /// fit in the device's local memory), false the chunked columns; nil: where it measured faster
    /// (`OpenCLBackend.implicitApplies`). `SGE_CONV_CPU_IMPLICIT=0|1` sets it.
    public var cpuImplicit: Bool? = ProcessInfo.processInfo.environment["SGE_CONV_CPU_IMPLICIT"].flatMap { Int($0) }.map { $0 != 0 }

    /// Floats a conv_cpu.cl work-item keeps re-reading (its share of L2): the weight-gradient
    /// kernel's reduction piece is this ÷ (M + N) positions, the small-matrix kernel's chunk this ÷ 2K.
    /// Tests lower it to force many pieces and chunks and their tails; `SGE_CONV_CPU_CACHE_FLOATS`
    /// sets it for measurements.
    public var cpuCacheFloats = Int(ProcessInfo.processInfo.environment["SGE_CONV_CPU_CACHE_FLOATS"] ?? "") ?? 128 << 10

    /// Forces the wide backward's grad-weight slice length in images (1: per image; a value ≥ the
    /// chunk: one GEMM); nil: by shape (`ConvBackwardPlan.choose`). `SGE_CONV_GW_SLICE` sets it.
    public var weightSliceImages: Int? = Int(ProcessInfo.processInfo.environment["SGE_CONV_GW_SLICE"] ?? "")
    /// Forces the wide backward's grad-input GEMM per image (true) or as one GEMM (false); nil: by
    /// shape. `SGE_CONV_GI_PER_IMAGE=0|1` sets it.
    public var inputGradPerImage: Bool? = ProcessInfo.processInfo.environment["SGE_CONV_GI_PER_IMAGE"].flatMap { Int($0) }.map { $0 != 0 }

    /// The per-shape path choice (timed once per device and stored; Ops/ConvChoice.swift).
    public let chooser = ConvChooser()

    /// 3×3 stride-1 convolutions of the wide algorithm by Winograd F(2×2, 3×3) (forward and input
    /// gradient; ConvWinograd.swift): true forces it where it applies, false rules it out, nil leaves
    /// it to the per-shape choice (`chooser`). `SGE_CONV_WINOGRAD=0|1` sets it.
    public var winograd: Bool? = ProcessInfo.processInfo.environment["SGE_CONV_WINOGRAD"].flatMap { Int($0) }.map { $0 != 0 }
    /// The backward's Winograd weight gradient (`ConvPath.winogradFull`, CPU drivers): true forces it
    /// wherever Winograd is forced for a backward, false rules it out, nil leaves it to the per-shape
    /// choice (a candidate wherever it applies). `SGE_CONV_WINOGRAD_GW=0|1` sets it.
    public var winogradWeightGrad: Bool? = ProcessInfo.processInfo.environment["SGE_CONV_WINOGRAD_GW"].flatMap { Int($0) }.map { $0 != 0 }

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
