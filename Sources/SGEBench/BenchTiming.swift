import Foundation
import SGEEngine
import SGEKernels
import SGEOpenCL

/// Timing helpers shared by the `sge bench` commands.
public enum BenchTiming {
    /// Median and extremes of a set of timed repeats, in milliseconds.
    public struct Stats: Sendable {
        public var median: Double
        public var min: Double
        public var max: Double
        /// Every timed sample, in run order.
        public var samples: [Double]

        public init(_ samples: [Double]) {
            self.samples = samples
            let s = samples.sorted()
            median = SGEBench.median(samples)
            min = s.first ?? .nan
            max = s.last ?? .nan
        }
    }

    /// Runs `body` `warmup` times untimed, then `repeats` times; each run returns its own milliseconds.
    public static func sample(warmup: Int, repeats: Int, _ body: () throws -> Double) throws -> Stats {
        for _ in 0..<warmup { _ = try body() }
        return Stats(try (0..<repeats).map { _ in try body() })
    }

    /// Wall-clock milliseconds of `body` followed by clFinish (for calls that enqueue several kernels
    /// or CLBlast routines, where one profiling event is not the whole call). The queue is drained first.
    public static func wall(_ backend: OpenCLBackend, _ body: () throws -> Void) throws -> Double {
        try backend.synchronize()
        let t0 = DispatchTime.now().uptimeNanoseconds
        try body()
        try backend.synchronize()
        return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
    }

    /// A copy reference (`copy_float4`, or its streaming-store form) as something that can be timed
    /// again and again: two touched buffers of `size(_:)` bytes (>= 4x the device's cache; GB/s
    /// count one read and one write per byte copied) and the fastest work-group size, chosen once.
    /// `sge bench sge` times it in the same rounds as the kernels it compares with it, so a slow
    /// phase of a shared machine moves both sides of the fraction instead of one.
    public struct CopyProbe {
        /// Which copy kernel: `copy_float4` (plain stores) or `copy_float4_stream` (streaming stores
        /// where the compiler has them; on a CPU these skip the read of each destination line that a
        /// plain store makes, so this copy can be up to 1.5x faster there).
        public enum Kernel: String {
            case plain = "copy_float4"
            case stream = "copy_float4_stream"

            /// Its program: the streaming copy has one of its own (Kernels/bandwidth.cl), so a
            /// driver that cannot build it loses only that copy.
            public var source: String { self == .plain ? KernelSource.elementwise : KernelSource.bandwidth }
        }
        public let bytes: Int
        public let src: CLBuffer, dst: CLBuffer
        public let kernel: CLKernel
        /// The work-group size that won (nil: the driver's choice).
        public let local: Int?
        /// The samples of the winning configuration from the initial search.
        public let initial: Stats

        /// `sharing` another probe uses its two buffers instead of allocating two more.
        public init(_ backend: OpenCLBackend, kernel which: Kernel = .plain, sharing other: CopyProbe? = nil, warmup: Int, repeats: Int) throws {
            let kernel = try backend.device.kernel(which.rawValue, source: which.source)
            let bytes = other?.bytes ?? Self.size(backend.device.info)
            self.bytes = bytes
            let (src, dst) = try other.map { ($0.src, $0.dst) } ?? touchedPair(backend, bytes: bytes)
            (self.src, self.dst, self.kernel) = (src, dst, kernel)
            // The best of the driver's choice and a few work-group sizes (on PoCL 256 beats the default by
            // ~40%), so the fractions are against the device's real limit.
            var best: (Stats, Int?)? = nil
            for local in [nil, 64, 256, 1024] as [Int?] {
                if let l = local, l > min(kernel.maxWorkGroupSize, backend.device.info.maxWorkGroupSize) { continue }
                let s = try BenchTiming.sample(warmup: warmup, repeats: repeats) { try Self.run(kernel, src, dst, bytes, local) }
                if best == nil || s.median < best!.0.median { best = (s, local) }
            }
            initial = best!.0
            local = best!.1
        }

        private static func run(_ k: CLKernel, _ src: CLBuffer, _ dst: CLBuffer, _ bytes: Int, _ local: Int?) throws -> Double {
            let n4 = bytes / 16
            let args: [CLKernel.Arg] = [.buffer(src), .buffer(dst), .int(Int32(n4))]
            if let l = local { return try k.enqueue(args, global: [n4], local: [l]).milliseconds() }
            return try k.enqueue(args, global: [n4]).milliseconds()
        }

        /// Bytes per buffer: `DeviceInfo.streamBufferBytes` (>= 4x the device's cache).
        public static func size(_ info: DeviceInfo) -> Int { info.streamBufferBytes }

        /// One timed copy, in milliseconds (profiling event).
        public func time() throws -> Double { try Self.run(kernel, src, dst, bytes, local) }

        /// GB/s of a copy that took `ms`, counting one read and one write.
        public func gbps(_ ms: Double) -> Double { Double(2 * bytes) / ms / 1e6 }

        /// GB/s of the initial search's winner (the copy timed back-to-back on its own buffers).
        public var aloneGBps: Double { gbps(initial.median) }
    }

    /// Two device buffers of `bytes`, both written once: never-written memory may be backed by the
    /// shared zero page (reads then hit the cache) and first writes page-fault, either of which would
    /// distort a copy figure.
    public static func touchedPair(_ backend: OpenCLBackend, bytes: Int) throws -> (CLBuffer, CLBuffer) {
        let src = try backend.device.buffer(bytes: bytes), dst = try backend.device.buffer(bytes: bytes)
        let fill = try backend.device.kernel("fill", source: KernelSource.elementwise)
        for buffer in [src, dst] { try fill.enqueue([.buffer(buffer), .int(Int32(bytes / 4)), .float(1)], global: [bytes / 4]) }
        return (src, dst)
    }

    /// clEnqueueCopyBuffer between two touched buffers of `CopyProbe.size`: GB/s counting one read
    /// and one write. (The driver's own copy, for comparison with the copy_float4 kernel.)
    public static func copyBufferBandwidth(_ backend: OpenCLBackend, warmup: Int, repeats: Int) throws -> (stats: Stats, gbps: Double, bytes: Int) {
        let bytes = CopyProbe.size(backend.device.info)
        let (src, dst) = try touchedPair(backend, bytes: bytes)
        let s = try sample(warmup: warmup, repeats: repeats) { try backend.device.copy(src, to: dst, bytes: bytes).milliseconds() }
        return (s, Double(2 * bytes) / s.median / 1e6, bytes)
    }
}
