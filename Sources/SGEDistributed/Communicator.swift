import CMPI
import Foundation
import SGETensor

/// The collective operations data-parallel training needs, over the ranks of one job.
/// `SingleProcess` (no MPI call at all) or `MPICommunicator` (Open MPI's MPI_COMM_WORLD).
public protocol Communicator: AnyObject {
    /// This process's index, 0..<size.
    var rank: Int { get }
    /// Ranks in the job.
    var size: Int { get }
    /// This process's index among the ranks on its machine (picks its GPU), and their number.
    var localRank: Int { get }
    var localSize: Int { get }
    /// In place: every rank receives root's bytes.
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws
    /// In place element-wise sums over the ranks.
    func allReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws
    func allReduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws
    /// In place element-wise maximum over the ranks.
    func allReduceMax(_ values: UnsafeMutableBufferPointer<Int32>) throws
    /// Starts an in-place sum that completes in the background; the buffer must stay alive and
    /// untouched until the returned reduction's `wait()`.
    func startAllReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws -> PendingReduction
    /// One value from every rank, in rank order.
    func allGather(_ value: UInt64) throws -> [UInt64]
    /// Ends every rank of the job with `code` (MPI_Abort); a single process just exits.
    func abort(code: Int32) -> Never
    /// Ends the MPI session (call once, on every rank, after the last collective).
    func finalize()
}

/// An all-reduce in flight (`MPI_Iallreduce`).
public protocol PendingReduction: AnyObject {
    /// Lets the library progress; true once complete.
    func test() throws -> Bool
    /// Blocks until complete.
    func wait() throws
}

extension Communicator {
    public var isDistributed: Bool { size > 1 }

    public func allReduceSum(_ values: inout [Double]) throws {
        try values.withUnsafeMutableBufferPointer { try allReduceSum($0) }
    }

    public func allReduceSum(_ values: inout [Float]) throws {
        try values.withUnsafeMutableBufferPointer { try allReduceSum($0) }
    }

    public func broadcast(_ values: inout [Float], root: Int = 0) throws {
        try values.withUnsafeMutableBytes { try broadcast($0, root: root) }
    }
}

/// One process: every collective is the identity and nothing touches MPI.
public final class SingleProcess: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public var localRank: Int { 0 }
    public var localSize: Int { 1 }
    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {}
    public func allReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws {}
    public func allReduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws {}
    public func allReduceMax(_ values: UnsafeMutableBufferPointer<Int32>) throws {}
    public func startAllReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws -> PendingReduction { Completed() }
    public func allGather(_ value: UInt64) throws -> [UInt64] { [value] }
    public func abort(code: Int32) -> Never { exit(code) }
    public func finalize() {}

    final class Completed: PendingReduction {
        func test() throws -> Bool { true }
        func wait() throws {}
    }
}

/// Open MPI's MPI_COMM_WORLD. Created once per process by `Distributed.start()`.
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    public let localRank: Int
    public let localSize: Int
    private var finalized = false

    init(environment: [String: String]) throws {
        var r: Int32 = 0, s: Int32 = 0
        try MPICommunicator.check(cmpi_init(&r, &s), "MPI_Init_thread")
        rank = Int(r)
        size = Int(s)
        localRank = environment["OMPI_COMM_WORLD_LOCAL_RANK"].flatMap(Int.init) ?? 0
        localSize = environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init) ?? 1
    }

    static func check(_ code: Int32, _ call: String) throws {
        guard code != 0 else { return }
        var buffer = [CChar](repeating: 0, count: 512)
        cmpi_error_string(code, &buffer, Int32(buffer.count))
        let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        throw SGEError.io(path: "MPI", reason: "\(call) failed: \(text) (code \(code))")
    }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        try MPICommunicator.check(cmpi_bcast_bytes(base, Int64(buffer.count), Int32(root)), "MPI_Bcast")
    }

    public func allReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws {
        guard let base = values.baseAddress, values.count > 0 else { return }
        try MPICommunicator.check(cmpi_allreduce_sum_float(base, Int64(values.count)), "MPI_Allreduce")
    }

    public func allReduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws {
        guard let base = values.baseAddress, values.count > 0 else { return }
        try MPICommunicator.check(cmpi_allreduce_sum_double(base, Int64(values.count)), "MPI_Allreduce")
    }

    public func allReduceMax(_ values: UnsafeMutableBufferPointer<Int32>) throws {
        guard let base = values.baseAddress, values.count > 0 else { return }
        try MPICommunicator.check(cmpi_allreduce_max_int(base, Int64(values.count)), "MPI_Allreduce")
    }

    public func startAllReduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws -> PendingReduction {
        guard let base = values.baseAddress, values.count > 0 else { return SingleProcess.Completed() }
        var request: UnsafeMutableRawPointer?
        try MPICommunicator.check(cmpi_iallreduce_sum_float(base, Int64(values.count), &request), "MPI_Iallreduce")
        return Request(request!)
    }

    public func allGather(_ value: UInt64) throws -> [UInt64] {
        var all = [UInt64](repeating: 0, count: size)
        try MPICommunicator.check(cmpi_allgather_u64(value, &all), "MPI_Allgather")
        return all
    }

    public func abort(code: Int32) -> Never {
        cmpi_abort(code)
        exit(code)
    }

    public func finalize() {
        guard !finalized else { return }
        finalized = true
        _ = cmpi_finalize()
    }

    final class Request: PendingReduction {
        private var handle: UnsafeMutableRawPointer?
        init(_ handle: UnsafeMutableRawPointer) { self.handle = handle }
        func test() throws -> Bool {
            guard let handle else { return true }
            var done: Int32 = 0
            try MPICommunicator.check(cmpi_test(handle, &done), "MPI_Test")
            return done != 0
        }
        func wait() throws {
            guard let h = handle else { return }
            handle = nil
            try MPICommunicator.check(cmpi_wait(h), "MPI_Wait")
        }
        deinit { if let handle { _ = cmpi_wait(handle) } }
    }
}

/// How this process was started, and the communicator for it.
public enum Distributed {
    /// Whether mpirun (Open MPI) started this process: it sets OMPI_COMM_WORLD_SIZE.
    public static func launchedByMPI(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        environment["OMPI_COMM_WORLD_SIZE"] != nil
    }

    /// The local rank and local size mpirun announces (0 and 1 without mpirun), readable before MPI_Init.
    public static func localPlacement(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> (rank: Int, size: Int) {
        (environment["OMPI_COMM_WORLD_LOCAL_RANK"].flatMap(Int.init) ?? 0, environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init) ?? 1)
    }

    /// Initialises MPI under mpirun, else returns `SingleProcess` (no MPI call).
    public static func start(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> any Communicator {
        launchedByMPI(environment) ? try MPICommunicator(environment: environment) : SingleProcess()
    }

    /// PoCL threads for a rank that shares the CPU with `localSize - 1` others: max(1, cores / local
    /// ranks), set in the environment before OpenCL initialises, unless the user set it. Returns the value set.
    @discardableResult
    public static func sharePoCLThreads(localSize: Int) -> Int? {
        guard localSize > 1, ProcessInfo.processInfo.environment["POCL_MAX_PTHREAD_COUNT"] == nil else { return nil }
        let threads = max(1, ProcessInfo.processInfo.activeProcessorCount / localSize)
        setenv("POCL_MAX_PTHREAD_COUNT", String(threads), 1)
        return threads
    }
}
