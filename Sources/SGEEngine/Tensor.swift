import Foundation
import SGEOpenCL
import SGETensor

/// Page-aligned host memory for a tensor. A class so a non-blocking upload can keep it alive until
/// the device has read it.
final class HostStorage: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int
    init(count: Int) {
        self.count = count
        HostStorage.counter.lock()
        HostStorage.created += 1
        HostStorage.counter.unlock()
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        pointer.initialize(repeating: 0, count: count)
    }
    deinit { UnsafeMutableRawPointer(pointer).deallocate() }
    private static let counter = NSLock()
    nonisolated(unsafe) private static var created = 0
    /// Host storages allocated so far in this process.
    static var allocations: Int {
        counter.lock()
        defer { counter.unlock() }
        return created
    }
    var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: pointer, count: count) }
}

/// Host memory of released tensors whose non-blocking uploads have not completed yet. Entries are
/// dropped once their event reports completion (checked whenever a new entry arrives).
enum InFlightUploads {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var entries: [(HostStorage, CLEvent)] = []

    static func keep(_ storage: HostStorage, until event: CLEvent) {
        lock.lock()
        defer { lock.unlock() }
        entries.removeAll { $0.1.isComplete }
        entries.append((storage, event))
    }
}

/// Where a tensor's valid copy lives.
public struct Residency: OptionSet, Sendable, CustomStringConvertible {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    public static let host = Residency(rawValue: 1)
    public static let device = Residency(rawValue: 2)
    public var description: String {
        switch self {
        case [.host, .device]: return "host+device"
        case .host: return "host"
        case .device: return "device"
        default: return "none"
        }
    }
}

/// A float32 tensor (NCHW when 4-D) that knows where its valid copy lives: host, device, or both.
///
/// The scheduler rules:
/// - Copies happen lazily, only when the other side needs the data (`deviceBuffer()` uploads if the
///   device copy is stale; `read()` downloads if the host copy is stale) and never when already valid.
/// - Uploads are non-blocking: the host storage is retained by the pending upload; writing the
///   host copy first waits for that upload to finish.
/// - Reading a device tensor on the host synchronises (a blocking read on the in-order queue, which
///   waits for every kernel that wrote it).
/// - Writing on one side invalidates the other.
public final class Tensor: @unchecked Sendable, CustomStringConvertible {
    public let shape: Shape
    public var count: Int { shape.count }
    /// The device context, or nil for host-only tensors (the reference backend).
    public let context: CLContext?

    private var host: HostStorage?
    private var buffer: CLBuffer?
    public private(set) var residency: Residency
    private var pendingUpload: CLEvent?
    /// Number of host→device and device→host copies this tensor has made (tests use these).
    public private(set) var uploads = 0
    public private(set) var downloads = 0
    /// A name for error messages ("layer1.0.conv1.weight").
    public var label: String = "tensor"

    /// A zero-filled tensor on the host (for a device context, uploaded when first needed).
    public init(zeros shape: Shape, context: CLContext?) {
        self.shape = shape
        self.context = context
        host = HostStorage(count: shape.count)
        residency = .host
    }

    /// A tensor holding `values` on the host.
    public convenience init(_ values: [Float], shape: Shape, context: CLContext?) {
        precondition(values.count == shape.count, "Tensor: \(values.count) values for shape \(shape)")
        self.init(zeros: shape, context: context)
        values.withUnsafeBufferPointer { src in host!.pointer.update(from: src.baseAddress!, count: values.count) }
    }

    /// A zero tensor of this one's shape in the same place (host or the same device).
    public func zerosLike() -> Tensor { Tensor(zeros: shape, context: context) }

    public convenience init(_ t: HostTensor, context: CLContext?) { self.init(t.data, shape: t.shape, context: context) }

    /// A device tensor whose contents a kernel is about to write (no host copy is made).
    public init(uninitializedOnDevice shape: Shape, context: CLContext) throws {
        self.shape = shape
        self.context = context
        buffer = try context.buffer(bytes: shape.count * 4)
        residency = .device
    }

    public var description: String { "\(label) \(shape) on \(residency)" }

    /// Host storages (a tensor's host copy) allocated so far by this process: the difference over a
    /// training step is its host tensor allocations.
    public static var hostStorageAllocations: Int { HostStorage.allocations }

    deinit {
        // A non-blocking upload may still be reading the host memory: keep it alive until done.
        if let e = pendingUpload, let host { InFlightUploads.keep(host, until: e) }
    }

    // MARK: host side

    /// The values, copied to the host first if the host copy is stale (synchronises with the device).
    public func read() throws -> [Float] {
        try syncToHost()
        return Array(host!.buffer)
    }

    /// Copies the values into `out` (count elements) without keeping a host copy when only the
    /// device copy is valid: no host storage is allocated (a training step's loss read).
    public func read(into out: UnsafeMutableBufferPointer<Float>) throws {
        guard out.count == count else {
            throw SGEError.shape("\(label): reading \(count) values into room for \(out.count)")
        }
        guard let dst = out.baseAddress, count > 0 else { return }
        if residency.contains(.host) || host != nil {
            try syncToHost()
            dst.update(from: host!.pointer, count: count)
            return
        }
        guard let context, let buffer else { throw SGEError.invalidArgument("\(label) has no valid copy to read") }
        try context.read(buffer, into: dst, bytes: count * 4)
        downloads += 1
    }

    public func hostTensor() throws -> HostTensor { HostTensor(shape: shape, data: try read()) }

    /// Read-only access to the host copy (downloads it first if stale).
    public func withHostValues<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) throws -> R {
        try syncToHost()
        return try body(UnsafeBufferPointer(host!.buffer))
    }

    /// Mutable access to the host copy; afterwards only the host copy is valid.
    public func withMutableHostValues<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) throws -> R {
        try syncToHost()
        try waitForUpload()
        let r = try body(host!.buffer)
        residency = .host
        return r
    }

    /// Replaces the contents from the host; afterwards only the host copy is valid.
    public func write(_ values: [Float]) throws {
        guard values.count == count else {
            throw SGEError.shape("\(label): writing \(values.count) values into a tensor of shape \(shape)")
        }
        try waitForUpload()
        if host == nil { host = HostStorage(count: count) }
        values.withUnsafeBufferPointer { src in host!.pointer.update(from: src.baseAddress!, count: count) }
        residency = .host
    }

    private func syncToHost() throws {
        if residency.contains(.host) { return }
        guard let context, let buffer else { preconditionFailure("tensor without a valid copy") }
        if host == nil { host = HostStorage(count: count) }
        try context.read(buffer, into: host!.pointer, bytes: count * 4)
        downloads += 1
        residency.insert(.host)
    }

    private func waitForUpload() throws {
        if let e = pendingUpload {
            try e.wait()
            pendingUpload = nil
        }
    }

    // MARK: device side

    /// The device buffer, uploaded first (non-blocking) if the device copy is stale.
    public func deviceBuffer() throws -> CLBuffer {
        guard let context else {
            throw SGEError.invalidArgument("\(label) lives on the reference backend and has no device copy")
        }
        if residency.contains(.device), let buffer { return buffer }
        if buffer == nil { buffer = try context.buffer(bytes: count * 4) }
        try waitForUpload()
        pendingUpload = try context.write(buffer!, from: host!.pointer, bytes: count * 4, blocking: false)
        uploads += 1
        residency.insert(.device)
        return buffer!
    }

    /// Starts the upload now (non-blocking) so it overlaps with host work that follows (no-op for
    /// host-only tensors).
    public func prefetchToDevice() throws { if context != nil { _ = try deviceBuffer() } }

    /// The device buffer for a kernel that overwrites the whole tensor: no upload; afterwards
    /// only the device copy is valid.
    public func deviceBufferForOverwrite() throws -> CLBuffer {
        guard let context else {
            throw SGEError.invalidArgument("\(label) lives on the reference backend and has no device copy")
        }
        if buffer == nil { buffer = try context.buffer(bytes: count * 4) }
        try waitForUpload()
        residency = .device
        return buffer!
    }

    /// Moves the device copy into `view`, a region of a larger buffer (an `SGDPack`'s flat buffers),
    /// keeping the values: the host copy is brought up to date and uploaded into `view` when the
    /// device next needs it. Kernels that write the larger buffer then write this tensor; whoever
    /// launches them marks it with `deviceBufferForUpdate()` first.
    public func adoptDeviceStorage(_ view: CLBuffer) throws {
        guard context != nil, view.bytes == count * 4 else {
            throw SGEError.invalidArgument("\(label): cannot move \(count) values into a device region of \(view.bytes) bytes")
        }
        try syncToHost()
        try waitForUpload()
        buffer = view
        residency = .host
    }

    /// The device buffer for a kernel that reads and updates the tensor in place; afterwards only
    /// the device copy is valid.
    public func deviceBufferForUpdate() throws -> CLBuffer {
        let b = try deviceBuffer()
        residency = .device
        return b
    }
}
