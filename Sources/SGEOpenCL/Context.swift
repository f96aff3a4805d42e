import COpenCL
import Foundation
import SGETensor

/// A device's OpenCL context and its in-order profiling command queue. There is exactly one per
/// device for the whole process (`CLContext.shared(for:)`): CLBlast caches compiled kernels per
/// context, and programs built here are cached per context too.
public final class CLContext: @unchecked Sendable {
    public let info: DeviceInfo
    public let context: cl_context
    public let queue: cl_command_queue
    public let programs: ProgramCache

    private static let lock = NSLock()
    private static var contexts: [Int: CLContext] = [:]

    /// The process-wide context of `info`'s device, created on first use.
    public static func shared(for info: DeviceInfo) throws -> CLContext {
        lock.lock()
        defer { lock.unlock() }
        if let c = contexts[info.globalIndex] { return c }
        let c = try CLContext(info: info)
        contexts[info.globalIndex] = c
        c.appliedTuning = CLBlastTuning.applyStored(to: c)
        return c
    }

    /// The CLBlast parameters applied when this context was created (nil: CLBlast's defaults).
    public internal(set) var appliedTuning: AppliedTuning?

    /// While set, every launch, transfer and blocking wait on this context is counted and timed.
    public var recorder: LaunchRecorder?

    init(info: DeviceInfo) throws {
        self.info = info
        var status: cl_int = 0
        var device: cl_device_id? = info.deviceID
        var props: [cl_context_properties] = [
            cl_context_properties(CL_CONTEXT_PLATFORM), cl_context_properties(Int(bitPattern: UnsafeRawPointer(info.platformID))), 0,
        ]
        guard let ctx = clCreateContext(&props, 1, &device, nil, nil, &status) else {
            try check(status, "clCreateContext")
            throw OpenCLError.api(call: "clCreateContext", code: status, name: OpenCLError.name(of: status))
        }
        try check(status, "clCreateContext")
        context = ctx
        guard let q = clCreateCommandQueue(ctx, info.deviceID, cl_command_queue_properties(CL_QUEUE_PROFILING_ENABLE), &status) else {
            clReleaseContext(ctx)
            throw OpenCLError.api(call: "clCreateCommandQueue", code: status, name: OpenCLError.name(of: status))
        }
        queue = q
        programs = ProgramCache(info: info)
        pool.capacityBytes = BufferPool.capacity(globalMemory: info.globalMemory)
    }

    deinit {
        clReleaseCommandQueue(queue)
        clReleaseContext(context)
    }

    /// Released buffers kept for reuse, by size. Fresh buffers are expensive on some drivers (PoCL
    /// faults their pages in on first write: a 25 MB output measured 20 ms vs 3 ms reused), and a
    /// training step allocates the same sizes every time. Safe with one in-order queue: a reused
    /// buffer's new commands run after every earlier command that used it.
    let pool = BufferPool()

    /// Serves device buffer requests inside a planned training step (SGEEngine's `StepMemory`); nil:
    /// every request goes to the pool.
    public var stepBuffers: (any StepBufferSource)?

    /// A device buffer of `bytes` bytes (at least 4): from the step's memory plan when one serves
    /// this request (`stepBuffers`), else reused from the pool when one of that size is free.
    public func buffer(bytes: Int) throws -> CLBuffer {
        let size = max(bytes, 4)
        if let source = stepBuffers, let b = try source.buffer(bytes: size, context: self) { return b }
        return try pooledBuffer(bytes: size)
    }

    /// A device buffer of `bytes` bytes (at least 4) from the pool, bypassing any step plan.
    public func pooledBuffer(bytes: Int) throws -> CLBuffer {
        let size = max(bytes, 4)
        if let mem = pool.take(bytes: size) { return CLBuffer(mem: mem, bytes: size, pool: pool) }
        return CLBuffer(mem: try createBuffer(size), bytes: size, pool: pool)
    }

    /// A device buffer of `bytes` bytes that is released, never pooled, when its last reference
    /// goes (a step plan's arena); it counts in `deviceBytes`.
    public func unpooledBuffer(bytes: Int) throws -> CLBuffer {
        let size = max(bytes, 4)
        return CLBuffer(mem: try createBuffer(size), bytes: size, pool: pool, reusable: false)
    }

    /// clCreateBuffer of `size` bytes, counted in `deviceBytes` and `deviceAllocations`.
    private func createBuffer(_ size: Int) throws -> cl_mem {
        var status: cl_int = 0
        // Checked before the driver sees it: some drivers assert instead of returning an error.
        guard UInt64(size) <= info.maxAllocation else {
            throw SGEError.memory("a device buffer of \(size) bytes exceeds \(info.name)'s largest allocation "
                + "(\(info.maxAllocation) bytes; global memory \(info.globalMemory) bytes): use a smaller batch")
        }
        guard let mem = clCreateBuffer(context, cl_mem_flags(CL_MEM_READ_WRITE), size, nil, &status), status == CL_SUCCESS else {
            if status == CL_MEM_OBJECT_ALLOCATION_FAILURE || status == CL_OUT_OF_RESOURCES || status == CL_OUT_OF_HOST_MEMORY
                || status == CL_INVALID_BUFFER_SIZE {
                throw SGEError.memory("clCreateBuffer of \(size) bytes failed with \(OpenCLError.name(of: status)) (\(status)) on \(info.name) "
                    + "(global memory \(info.globalMemory) bytes, max allocation \(info.maxAllocation)): use a smaller batch")
            }
            throw OpenCLError.api(call: "clCreateBuffer(\(size) bytes)", code: status, name: OpenCLError.name(of: status))
        }
        pool.created(bytes: size)
        return mem
    }

    /// cl_mem objects created on this context so far (clCreateBuffer and clCreateSubBuffer): the
    /// difference over a step is its device allocations.
    public var deviceAllocations: Int { pool.allocations }

    /// Releases the buffers the pool keeps for reuse (those in use are untouched).
    public func releasePooledBuffers() { pool.drain() }

    /// The alignment in bytes that a sub-buffer's offset needs (CL_DEVICE_MEM_BASE_ADDR_ALIGN).
    public func subBufferAlignment() throws -> Int {
        let bits: cl_uint = try Devices.deviceValue(info.deviceID, CL_DEVICE_MEM_BASE_ADDR_ALIGN)
        return max(4, Int(bits) / 8)
    }

    /// `bytes` bytes of `parent` from `offset` (a multiple of `subBufferAlignment()`) as a buffer of
    /// their own, which kernels see as a whole buffer. It keeps the parent alive and is released,
    /// not pooled. Commands on one in-order queue see the parent and its sub-buffers consistently.
    public func subBuffer(of parent: CLBuffer, offset: Int, bytes: Int) throws -> CLBuffer {
        guard offset >= 0, bytes > 0, offset + bytes <= parent.bytes else {
            throw SGEError.invalidArgument("sub-buffer of \(bytes) bytes at offset \(offset) does not fit a buffer of \(parent.bytes) bytes")
        }
        var region = cl_buffer_region(origin: offset, size: bytes)
        var status: cl_int = 0
        guard let mem = clCreateSubBuffer(parent.mem, cl_mem_flags(CL_MEM_READ_WRITE), cl_buffer_create_type(CL_BUFFER_CREATE_TYPE_REGION),
                                          &region, &status), status == CL_SUCCESS else {
            throw OpenCLError.api(call: "clCreateSubBuffer(offset \(offset), \(bytes) bytes)", code: status, name: OpenCLError.name(of: status))
        }
        pool.subBufferCreated()
        return CLBuffer(mem: mem, bytes: bytes, parent: parent)
    }

    /// Bytes of device buffers that exist now (in use or kept by the pool for reuse), and the most
    /// that existed at once since the context was made or `resetPeakBytes` was called.
    public var deviceBytes: (current: Int, peak: Int) { pool.liveBytes }

    /// Starts a new peak measurement from the current size.
    public func resetPeakBytes() { pool.resetPeak() }

    /// Copies `bytes` bytes from host memory to `buffer`. When `blocking` is false the host memory
    /// must stay alive and unchanged until the returned event completes.
    @discardableResult
    public func write(_ buffer: CLBuffer, offset: Int = 0, from pointer: UnsafeRawPointer, bytes: Int, blocking: Bool) throws -> CLEvent {
        var event: cl_event?
        let start = DispatchTime.now()
        try check(clEnqueueWriteBuffer(queue, buffer.mem, blocking ? cl_bool(CL_TRUE) : cl_bool(CL_FALSE), offset, bytes, pointer, 0, nil, &event),
                  "clEnqueueWriteBuffer")
        recorder?.transferred()
        if blocking { recorder?.blocked(since: start) }
        return CLEvent(event!)
    }

    /// Copies `bytes` bytes from `buffer` into host memory, waiting until done.
    public func read(_ buffer: CLBuffer, offset: Int = 0, into pointer: UnsafeMutableRawPointer, bytes: Int) throws {
        let start = DispatchTime.now()
        try check(clEnqueueReadBuffer(queue, buffer.mem, cl_bool(CL_TRUE), offset, bytes, pointer, 0, nil, nil), "clEnqueueReadBuffer")
        recorder?.transferred()
        recorder?.blocked(since: start)
    }

    /// Device-side copy of `bytes` bytes.
    @discardableResult
    public func copy(_ src: CLBuffer, srcOffset: Int = 0, to dst: CLBuffer, dstOffset: Int = 0, bytes: Int) throws -> CLEvent {
        var event: cl_event?
        try check(clEnqueueCopyBuffer(queue, src.mem, dst.mem, srcOffset, dstOffset, bytes, 0, nil, &event), "clEnqueueCopyBuffer")
        let e = CLEvent(event!)
        recorder?.launched("copy_buffer", e)
        return e
    }

    /// Enqueues zeroing `bytes` bytes of `buffer` from `offset` (clEnqueueFillBuffer; both multiples of 4).
    @discardableResult
    public func enqueueZero(_ buffer: CLBuffer, offset: Int = 0, bytes: Int) throws -> CLEvent {
        var zero: Float = 0
        var event: cl_event?
        try check(clEnqueueFillBuffer(queue, buffer.mem, &zero, 4, offset, bytes, 0, nil, &event), "clEnqueueFillBuffer")
        let e = CLEvent(event!)
        recorder?.launched("fill_buffer", e)
        return e
    }

    /// Blocks until every enqueued command has finished.
    public func finish() throws {
        let start = DispatchTime.now()
        try check(clFinish(queue), "clFinish")
        recorder?.blocked(since: start)
    }

    /// Submits enqueued commands without waiting.
    public func flush() throws { try check(clFlush(queue), "clFlush") }

    /// The kernel `name` from `source` built with `defines` (cached in memory and on disk).
    public func kernel(_ name: String, source: String, defines: [String: String] = [:]) throws -> CLKernel {
        try programs.kernel(name, source: source, defines: defines, context: self)
    }
}

/// A device buffer; when the last reference goes it returns to its context's pool (or is released).
public final class CLBuffer: @unchecked Sendable {
    public let mem: cl_mem
    public let bytes: Int
    weak var pool: BufferPool?
    /// False for buffers released rather than pooled when the last reference goes (plan arenas).
    let reusable: Bool
    /// For a sub-buffer: the buffer it is a region of, kept alive as long as the sub-buffer.
    public let parent: CLBuffer?
    /// Told `releaseTag` when this buffer's last reference goes (a step plan's recording).
    public weak var releaseObserver: (any BufferReleaseObserver)?
    public var releaseTag = 0
    /// This object's number, unique within the process (a kernel compares buffer arguments by it:
    /// a cl_mem handed back to the pool and wrapped again is a new CLBuffer with a new serial).
    public let serial: UInt64
    init(mem: cl_mem, bytes: Int, pool: BufferPool? = nil, parent: CLBuffer? = nil, reusable: Bool = true) {
        (self.mem, self.bytes, self.pool, self.parent, self.reusable) = (mem, bytes, pool, parent, reusable)
        serial = Self.serials.next()
    }
    private static let serials = SerialCounter()
    deinit {
        releaseObserver?.bufferReleased(tag: releaseTag)
        if let pool, reusable, pool.give(mem, bytes: bytes) { return }
        pool?.released(bytes: bytes)
        clReleaseMemObject(mem)
    }
}

/// A thread-safe counter from 1.
final class SerialCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var last: UInt64 = 0

    func next() -> UInt64 {
        lock.lock()
        defer { lock.unlock() }
        last += 1
        return last
    }
}

/// Serves device buffer requests ahead of the pool (see `CLContext.stepBuffers`).
public protocol StepBufferSource: AnyObject {
    /// A buffer of exactly `bytes` bytes, or nil to let the pool serve the request.
    func buffer(bytes: Int, context: CLContext) throws -> CLBuffer?
}

/// Learns when observed buffers are released (`CLBuffer.releaseObserver`).
public protocol BufferReleaseObserver: AnyObject {
    func bufferReleased(tag: Int)
}

/// Free device buffers by size, up to `capacityBytes` in total (then buffers are released).
final class BufferPool: @unchecked Sendable {
    private let lock = NSLock()
    private var free: [Int: [cl_mem]] = [:]
    private var heldBytes = 0
    private var live = 0, peak = 0
    private var creations = 0
    var capacityBytes = 1 << 30

    /// How much released memory to keep: half the device's global memory, at least 1 GiB. A
    /// training step frees and re-requests the same sizes every step; a pool smaller than the
    /// step's working set releases buffers only to allocate (and on CPU drivers page-fault) them
    /// again: SGE-ResNet-50 at batch 32 on PoCL (4 GiB of buffers) spent most of its step there
    /// with a 1 GiB pool.
    static func capacity(globalMemory: UInt64) -> Int { Int(max(UInt64(1 << 30), globalMemory / 2)) }

    /// Device bytes allocated and not yet released (pooled ones included), and their peak.
    var liveBytes: (current: Int, peak: Int) {
        lock.lock()
        defer { lock.unlock() }
        return (live, peak)
    }

    func created(bytes: Int) {
        lock.lock()
        defer { lock.unlock() }
        live += bytes
        peak = max(peak, live)
        creations += 1
    }

    func subBufferCreated() {
        lock.lock()
        defer { lock.unlock() }
        creations += 1
    }

    /// cl_mem objects created (buffers and sub-buffers).
    var allocations: Int {
        lock.lock()
        defer { lock.unlock() }
        return creations
    }

    /// Releases every kept buffer.
    func drain() {
        lock.lock()
        let lists = free
        free = [:]
        for (bytes, list) in lists { live -= bytes * list.count }
        heldBytes = 0
        lock.unlock()
        for list in lists.values { for m in list { clReleaseMemObject(m) } }
    }

    func released(bytes: Int) {
        lock.lock()
        defer { lock.unlock() }
        live -= bytes
    }

    func resetPeak() {
        lock.lock()
        defer { lock.unlock() }
        peak = live
    }

    func take(bytes: Int) -> cl_mem? {
        lock.lock()
        defer { lock.unlock() }
        guard let mem = free[bytes]?.popLast() else { return nil }
        heldBytes -= bytes
        return mem
    }

    /// Keeps `mem` for reuse; false if the pool is full (the caller releases it).
    func give(_ mem: cl_mem, bytes: Int) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard heldBytes + bytes <= capacityBytes else { return false }
        free[bytes, default: []].append(mem)
        heldBytes += bytes
        return true
    }

    deinit { for list in free.values { for m in list { clReleaseMemObject(m) } } }
}

/// An OpenCL event; released in deinit. With the profiling queue it gives the command's device time.
public final class CLEvent: @unchecked Sendable {
    public let event: cl_event
    init(_ event: cl_event) { self.event = event }
    deinit { clReleaseEvent(event) }

    /// Whether the command has finished (or failed); does not block.
    public var isComplete: Bool {
        var status: cl_int = 0
        guard clGetEventInfo(event, cl_event_info(CL_EVENT_COMMAND_EXECUTION_STATUS), 4, &status, nil) == CL_SUCCESS else { return true }
        return status <= CL_COMPLETE
    }

    public func wait() throws {
        var e: cl_event? = event
        try check(clWaitForEvents(1, &e), "clWaitForEvents")
    }

    /// Device execution time (end - start) in milliseconds; waits for the event first.
    public func milliseconds() throws -> Double {
        try wait()
        var start: cl_ulong = 0
        var end: cl_ulong = 0
        try check(clGetEventProfilingInfo(event, cl_profiling_info(CL_PROFILING_COMMAND_START), 8, &start, nil), "clGetEventProfilingInfo")
        try check(clGetEventProfilingInfo(event, cl_profiling_info(CL_PROFILING_COMMAND_END), 8, &end, nil), "clGetEventProfilingInfo")
        return Double(end &- start) / 1e6
    }

    /// Device time from the start of `first` to the end of `last`, in milliseconds.
    public static func span(_ first: CLEvent, _ last: CLEvent) throws -> Double {
        try last.wait()
        var start: cl_ulong = 0
        var end: cl_ulong = 0
        try check(clGetEventProfilingInfo(first.event, cl_profiling_info(CL_PROFILING_COMMAND_START), 8, &start, nil), "clGetEventProfilingInfo")
        try check(clGetEventProfilingInfo(last.event, cl_profiling_info(CL_PROFILING_COMMAND_END), 8, &end, nil), "clGetEventProfilingInfo")
        return Double(end &- start) / 1e6
    }
}
