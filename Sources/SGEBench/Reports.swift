import Foundation
import SGEOpenCL

// The JSON reports of `sge bench sge`, `sge bench gemm`, `sge bench conv` and `sge tune`, one
// Codable type per report kind (the suite's and `bench step`'s are BenchReport/BenchRow). Keys are
// the ones these commands have always printed, so earlier reports still compare. nil fields are
// left out (sge tune writes them as null, as it always has).

/// One row of `sge bench sge --json` (the report is a bare array of these): an SGE pass against
/// the copy bandwidth measured in the same rounds.
public struct SGEBenchRow: Codable, Equatable, Sendable {
    public var op = "sge"
    public var direction: String
    /// N, C, H, W.
    public var shape: [Int]
    public var groups: Int
    public var ms: Double
    public var gbps: Double
    public var fractionOfCopy: Double
    public var copyGbps: Double
    public var copyAloneGbps: Double
    public var device: String
    public var path: String
    public var workGroupSize: Int
    public var streamCopyGbps: Double?
    public var fractionOfStreamCopy: Double?

    public init(direction: String, shape: [Int], groups: Int, ms: Double, gbps: Double, copyGbps: Double, copyAloneGbps: Double,
                device: String, path: String, workGroupSize: Int, streamCopyGbps: Double?) {
        (self.direction, self.shape, self.groups, self.ms, self.gbps) = (direction, shape, groups, ms, gbps)
        (self.fractionOfCopy, self.copyGbps, self.copyAloneGbps) = (gbps / copyGbps, copyGbps, copyAloneGbps)
        (self.device, self.path, self.workGroupSize, self.streamCopyGbps) = (device, path, workGroupSize, streamCopyGbps)
        fractionOfStreamCopy = streamCopyGbps.map { gbps / $0 }
    }

    enum CodingKeys: String, CodingKey {
        case op, direction, shape, groups, ms, gbps, device, path
        case fractionOfCopy = "fraction_of_copy", copyGbps = "copy_gbps", copyAloneGbps = "copy_alone_gbps"
        case workGroupSize = "work_group_size", streamCopyGbps = "stream_copy_gbps", fractionOfStreamCopy = "fraction_of_stream_copy"
    }
}

/// `sge bench gemm --json`: SGEMM at each requested shape.
public struct GemmBenchReport: Codable, Equatable, Sendable {
    public struct Result: Codable, Equatable, Sendable {
        /// As given: MxNxK[:AB].
        public var shape: String
        public var ms, gflops: Double
        public init(shape: String, ms: Double, gflops: Double) { (self.shape, self.ms, self.gflops) = (shape, ms, gflops) }
    }
    public var device: String
    public var driver: String
    public var results: [Result]
    public init(device: String, driver: String, results: [Result]) { (self.device, self.driver, self.results) = (device, driver, results) }
}

/// One row of `sge bench conv --json` (a bare array): a convolution direction, or the plain SGEMM
/// of the same size (`op` "sgemm").
public struct ConvBenchRow: Codable, Equatable, Sendable {
    /// "conv" or "sgemm".
    public var op: String
    /// The case, naming the kernel in ASCII ("3x3 64->64 pad 1", "1x1 256->64") and the input.
    public var shape: String
    /// "forward", "backward" (grad input + grad weight + grad bias), "backward gw only", or for
    /// op sgemm the GEMM's form.
    public var direction: String
    public var algorithm: String
    public var ms: Double
    public var gflops: Double
    public var fractionOfSgemm: Double
    public var device: String

    public init(op: String, shape: String, direction: String, algorithm: String, ms: Double, gflops: Double, sgemmGflops: Double,
                device: String) {
        (self.op, self.shape, self.direction, self.algorithm, self.ms, self.gflops) = (op, shape, direction, algorithm, ms, gflops)
        (fractionOfSgemm, self.device) = (gflops / sgemmGflops, device)
    }

    enum CodingKeys: String, CodingKey {
        case op, shape, direction, algorithm, ms, gflops, device
        case fractionOfSgemm = "fraction_of_sgemm"
    }
}

/// `sge tune --json`.
public struct TuneReport: Codable, Equatable, Sendable {
    /// A shape's GFLOP/s before and after, as stored with the tuning.
    public typealias ShapeResult = CLBlastTuning.ShapeResult
    public var device: String
    public var stored: String?
    public var threshold: Int
    public var xgemm: [String: Int]?
    public var xgemmDirect: [String: Int]?
    public var candidatesTried: Int
    public var afterRemeasured: Bool
    public var candidatesRejected: Int
    public var totalGflopsBefore: Double
    public var totalGflopsAfter: Double
    public var shipped: String?
    public var totalGflopsShipped: Double?
    public var shapes: [ShapeResult]

    public init(device: String, stored: String?, threshold: Int, xgemm: [String: Int]?, xgemmDirect: [String: Int]?, candidatesTried: Int,
                afterRemeasured: Bool, candidatesRejected: Int, totalGflopsBefore: Double, totalGflopsAfter: Double, shipped: String?,
                totalGflopsShipped: Double?, shapes: [ShapeResult]) {
        (self.device, self.stored, self.threshold, self.xgemm, self.xgemmDirect) = (device, stored, threshold, xgemm, xgemmDirect)
        (self.candidatesTried, self.afterRemeasured, self.candidatesRejected) = (candidatesTried, afterRemeasured, candidatesRejected)
        (self.totalGflopsBefore, self.totalGflopsAfter, self.shipped, self.totalGflopsShipped) = (totalGflopsBefore, totalGflopsAfter, shipped, totalGflopsShipped)
        self.shapes = shapes
    }

    /// nil fields are written as null (as this report always has), not left out.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(device, forKey: .device)
        try c.encode(stored, forKey: .stored)
        try c.encode(threshold, forKey: .threshold)
        try c.encode(xgemm, forKey: .xgemm)
        try c.encode(xgemmDirect, forKey: .xgemmDirect)
        try c.encode(candidatesTried, forKey: .candidatesTried)
        try c.encode(afterRemeasured, forKey: .afterRemeasured)
        try c.encode(candidatesRejected, forKey: .candidatesRejected)
        try c.encode(totalGflopsBefore, forKey: .totalGflopsBefore)
        try c.encode(totalGflopsAfter, forKey: .totalGflopsAfter)
        try c.encode(shipped, forKey: .shipped)
        try c.encode(totalGflopsShipped, forKey: .totalGflopsShipped)
        try c.encode(shapes, forKey: .shapes)
    }
}

/// `sge bench data --json`: image-folder decoding and augmentation throughput, one run per thread count.
public struct DataBenchReport: Codable, Equatable, Sendable {
    public struct Run: Codable, Equatable, Sendable {
        public var threads, images, skipped: Int
        public var seconds, imagesPerSecond, imagesPerSecondPerThread: Double
        public init(threads: Int, images: Int, seconds: Double, skipped: Int) {
            (self.threads, self.images, self.seconds, self.skipped) = (threads, images, seconds, skipped)
            imagesPerSecond = Double(images) / seconds
            imagesPerSecondPerThread = imagesPerSecond / Double(threads)
        }
        enum CodingKeys: String, CodingKey {
            case threads, images, skipped, seconds
            case imagesPerSecond = "images_per_s", imagesPerSecondPerThread = "images_per_s_per_thread"
        }
    }
    /// The image folder; "train" (RandomResizedCrop + flip) or "eval" (resize + centre crop).
    public var data: String
    public var imageSize: Int
    public var transform: String
    /// Cores of this machine.
    public var cores: Int
    public var runs: [Run]
    public init(data: String, imageSize: Int, transform: String, cores: Int, runs: [Run]) {
        (self.data, self.imageSize, self.transform, self.cores, self.runs) = (data, imageSize, transform, cores, runs)
    }
    enum CodingKeys: String, CodingKey {
        case data, transform, cores, runs
        case imageSize = "image_size"
    }
}
