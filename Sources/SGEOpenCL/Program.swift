import COpenCL
import Foundation
import SGETensor

/// Builds OpenCL programs once. Key: (source, sorted `-D` defines, platform, device, driver).
/// In memory for the process; on disk as program binaries under `$XDG_CACHE_HOME/sge/programs`
/// (else `~/.cache/sge/programs`), written atomically with their length and hash; a file that does
/// not match them (truncated, damaged, older format) never reaches the driver: it is logged under
/// `SGE_VERBOSE`, rebuilt from source and replaced. A binary the driver rejects is rebuilt too.
public final class ProgramCache: @unchecked Sendable {
    /// How programs were obtained in this process (for logs and tests).
    public struct Stats: Sendable, Equatable {
        public var sourceBuilds = 0
        public var diskHits = 0
        public var memoryHits = 0
    }

    let info: DeviceInfo
    private var programs: [String: cl_program] = [:]
    private var kernels: [String: CLKernel] = [:]
    /// Launch-time lookup: (name, options) -> the kernels built from each source under that name.
    /// Keying by the whole source would hash tens of kilobytes on every launch; comparing the
    /// source instead is cheap (the same embedded string compares by identity first).
    private var recent: [String: [(source: String, kernel: CLKernel)]] = [:]
    private let lock = NSLock()
    public private(set) var stats = Stats()

    init(info: DeviceInfo) { self.info = info }

    deinit {
        kernels.removeAll()
        recent.removeAll()
        for p in programs.values { clReleaseProgram(p) }
    }

    /// The folder for compiled program binaries (and tuning results).
    public static var cacheDirectory: URL {
        let env = ProcessInfo.processInfo.environment
        if let xdg = env["XDG_CACHE_HOME"], !xdg.isEmpty { return URL(fileURLWithPath: xdg).appendingPathComponent("sge") }
        let home = env["HOME"] ?? NSTemporaryDirectory()
        return URL(fileURLWithPath: home).appendingPathComponent(".cache/sge")
    }

    /// The disk-cache file name of a program key.
    public static func fileName(forKey key: String) -> String { "\(fnv1a(key)).bin" }

    /// Build options from defines, sorted so the same set always gives the same key.
    public static func options(_ defines: [String: String]) -> String {
        defines.keys.sorted().map { "-D\($0)=\(defines[$0]!)" }.joined(separator: " ")
    }

    func kernel(_ name: String, source: String, defines: [String: String], context: CLContext) throws -> CLKernel {
        lock.lock()
        defer { lock.unlock() }
        let options = defines.isEmpty ? "" : Self.options(defines)
        let fastKey = "\(name)\n\(options)"
        if let k = recent[fastKey]?.first(where: { $0.source == source })?.kernel {
            stats.memoryHits += 1
            return k
        }
        let key = "\(info.cacheIdentity)\n\(options)\n\(source)"
        let kernelKey = "\(name)\n\(key)"
        if let k = kernels[kernelKey] {
            stats.memoryHits += 1
            recent[fastKey, default: []].append((source, k))
            return k
        }
        let program = try program(key: key, source: source, options: options, kernelName: name, context: context)
        var status: cl_int = 0
        guard let k = clCreateKernel(program, name, &status), status == CL_SUCCESS else {
            throw OpenCLError.api(call: "clCreateKernel(\(name))", code: status, name: OpenCLError.name(of: status))
        }
        let kernel = CLKernel(kernel: k, name: name, context: context)
        kernels[kernelKey] = kernel
        recent[fastKey, default: []].append((source, kernel))
        return kernel
    }

    private func program(key: String, source: String, options: String, kernelName: String, context: CLContext) throws -> cl_program {
        if let p = programs[key] { return p }
        let file = Self.cacheDirectory.appendingPathComponent("programs/\(Self.fileName(forKey: key))")
        if let p = loadBinary(file: file, options: options, context: context) {
            stats.diskHits += 1
            log("loaded cached program for '\(kernelName)' from \(file.path)")
            programs[key] = p
            return p
        }
        let start = Date()
        var status: cl_int = 0
        let program: cl_program? = source.withCString { ptr in
            var s: UnsafePointer<CChar>? = ptr
            var length = strlen(ptr)
            return clCreateProgramWithSource(context.context, 1, &s, &length, &status)
        }
        guard let program, status == CL_SUCCESS else {
            throw OpenCLError.api(call: "clCreateProgramWithSource", code: status, name: OpenCLError.name(of: status))
        }
        var device: cl_device_id? = info.deviceID
        let buildStatus = clBuildProgram(program, 1, &device, options + " -cl-std=CL1.2", nil, nil)
        if buildStatus != CL_SUCCESS {
            let buildLog = Self.buildLog(program, device: info.deviceID)
            clReleaseProgram(program)
            if buildStatus == CL_BUILD_PROGRAM_FAILURE || !buildLog.isEmpty {
                throw OpenCLError.build(kernel: kernelName, options: options, log: buildLog)
            }
            throw OpenCLError.api(call: "clBuildProgram(\(kernelName))", code: buildStatus, name: OpenCLError.name(of: buildStatus))
        }
        stats.sourceBuilds += 1
        log(String(format: "built program for '%@' from source in %.0f ms", kernelName, Date().timeIntervalSince(start) * 1000))
        saveBinary(program, file: file)
        programs[key] = program
        return program
    }

    static func buildLog(_ program: cl_program, device: cl_device_id) -> String {
        var size = 0
        guard clGetProgramBuildInfo(program, device, cl_program_build_info(CL_PROGRAM_BUILD_LOG), 0, nil, &size) == CL_SUCCESS, size > 0 else { return "" }
        var bytes = [CChar](repeating: 0, count: size + 1)
        guard clGetProgramBuildInfo(program, device, cl_program_build_info(CL_PROGRAM_BUILD_LOG), size, &bytes, nil) == CL_SUCCESS else { return "" }
        return String(cString: bytes).trimmingSpaces()
    }

    /// Header of a cache file: magic, the binary's length and its FNV-1a hash (both little-endian
    /// UInt64), then the driver's binary. A file that does not match byte for byte is never handed
    /// to the driver (a truncated binary crashes some drivers inside clCreateProgramWithBinary).
    static let cacheMagic = Array("SGEPRG1\n".utf8)
    static let cacheHeaderBytes = 24

    /// The cache file's bytes for a driver binary.
    static func cacheFile(binary: [UInt8]) -> Data {
        var out = Data(cacheMagic)
        for value in [UInt64(binary.count), Integrity.fnv1a64(binary)] {
            var le = value.littleEndian
            withUnsafeBytes(of: &le) { out.append(contentsOf: $0) }
        }
        out.append(contentsOf: binary)
        return out
    }

    /// The driver binary of a cache file, or why the file is rejected.
    static func binary(fromCacheFile data: Data) -> Result<[UInt8], SGEError> {
        let bytes = [UInt8](data)
        func reject(_ why: String) -> Result<[UInt8], SGEError> { .failure(.corruptFile(path: "", reason: why)) }
        guard bytes.count >= cacheHeaderBytes, Array(bytes[0..<8]) == cacheMagic else {
            return reject("not an sge program cache file (\(bytes.count) bytes, no SGEPRG1 header)")
        }
        func u64(_ at: Int) -> UInt64 { (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[at + $1]) << (8 * UInt64($1)) } }
        let length = u64(8), hash = u64(16)
        let stored = bytes.count - cacheHeaderBytes
        guard length == UInt64(stored), length > 0 else {
            return reject("header says \(length) bytes of binary, the file holds \(stored) (truncated or extended)")
        }
        let binary = Array(bytes[cacheHeaderBytes...])
        guard Integrity.fnv1a64(binary) == hash else { return reject("the binary does not match its stored hash (damaged)") }
        return .success(binary)
    }

    private func loadBinary(file: URL, options: String, context: CLContext) -> cl_program? {
        guard let data = try? Data(contentsOf: file), !data.isEmpty else { return nil }
        let binary: [UInt8]
        switch Self.binary(fromCacheFile: data) {
        case .success(let b): binary = b
        case .failure(let e):
            if case .corruptFile(_, let reason) = e { log("cached program \(file.path) rejected: \(reason); rebuilding from source") }
            return nil
        }
        var status: cl_int = 0
        var binaryStatus: cl_int = 0
        var device: cl_device_id? = info.deviceID
        var length = binary.count
        let program: cl_program? = binary.withUnsafeBufferPointer { buf in
            var ptr: UnsafePointer<UInt8>? = buf.baseAddress
            return clCreateProgramWithBinary(context.context, 1, &device, &length, &ptr, &binaryStatus, &status)
        }
        guard let program, status == CL_SUCCESS, binaryStatus == CL_SUCCESS else {
            log("ignoring unreadable cached program \(file.path); rebuilding")
            if let program { clReleaseProgram(program) }
            return nil
        }
        if clBuildProgram(program, 1, &device, options + " -cl-std=CL1.2", nil, nil) != CL_SUCCESS {
            log("cached program \(file.path) was rejected by the driver; rebuilding")
            clReleaseProgram(program)
            return nil
        }
        return program
    }

    private func saveBinary(_ program: cl_program, file: URL) {
        var size = 0
        guard clGetProgramInfo(program, cl_program_info(CL_PROGRAM_BINARY_SIZES), MemoryLayout<Int>.size, &size, nil) == CL_SUCCESS, size > 0 else { return }
        var bytes = [UInt8](repeating: 0, count: size)
        let ok: Bool = bytes.withUnsafeMutableBufferPointer { buf in
            var ptr: UnsafeMutablePointer<UInt8>? = buf.baseAddress
            return clGetProgramInfo(program, cl_program_info(CL_PROGRAM_BINARIES), MemoryLayout<UnsafeMutablePointer<UInt8>>.size, &ptr, nil) == CL_SUCCESS
        }
        guard ok else { return }
        // Written atomically (temporary + rename), replacing a rejected file; stale temporaries of
        // killed writers are removed. A cache that cannot be written is not an error: the program
        // is simply rebuilt next time.
        do {
            try AtomicFile.write(Self.cacheFile(binary: bytes), to: file.path)
        } catch {
            log("cannot write the program cache \(file.path): \(error)")
        }
    }

    private func log(_ message: String) {
        if ProcessInfo.processInfo.environment["SGE_VERBOSE"].map({ $0 != "0" && !$0.isEmpty }) ?? false {
            FileHandle.standardError.write(Data("[sge] \(message)\n".utf8))
        }
    }
}

/// 64-bit FNV-1a of a string, as 16 hex digits (cache file names).
func fnv1a(_ s: String) -> String { Integrity.hex(Integrity.fnv1a64(s.utf8)) }

/// A compiled kernel with typed argument setters. Not thread-safe (arguments are state).
public final class CLKernel: @unchecked Sendable {
    public let kernel: cl_kernel
    public let name: String
    unowned let context: CLContext

    /// The argument values last set on this kernel object (OpenCL keeps them between enqueues), so
    /// `enqueue` sets only those that changed.
    private var boundArgs: [BoundArg?] = []

    /// A buffer argument is the same only while it is the same CLBuffer: a released cl_mem's address
    /// can come back as another buffer (PoCL then reads the old one's parent through the kernel's
    /// stale argument), so buffers are compared by `CLBuffer.serial`, never reused within a process
    /// (no weak reference to copy on every launch).
    private enum BoundArg: Equatable {
        case mem(UInt64)
        case int(Int32)
        case float(UInt32)
        case local(Int)
    }

    init(kernel: cl_kernel, name: String, context: CLContext) {
        self.kernel = kernel
        self.name = name
        self.context = context
    }
    deinit { clReleaseKernel(kernel) }

    /// The program this kernel was made from.
    public private(set) lazy var program: cl_program? = {
        var p: cl_program?
        let status = clGetKernelInfo(kernel, cl_kernel_info(CL_KERNEL_PROGRAM), MemoryLayout<cl_program?>.size, &p, nil)
        return status == CL_SUCCESS ? p : nil
    }()

    /// Another kernel object of the same kernel (its own arguments), for a launch site that keeps
    /// its arguments bound between steps.
    public func clone() throws -> CLKernel {
        var status: cl_int = CL_INVALID_PROGRAM
        if let program, let k = clCreateKernel(program, name, &status), status == CL_SUCCESS {
            return CLKernel(kernel: k, name: name, context: context)
        }
        let code = status == CL_SUCCESS ? CL_INVALID_KERNEL : status
        throw OpenCLError.api(call: "clCreateKernel(\(name)) for a bound launch site", code: code, name: OpenCLError.name(of: code))
    }

    /// Whether `other` is a kernel object of the same kernel of the same program.
    public func isSameKernel(as other: CLKernel) -> Bool { name == other.name && program == other.program }

    /// Arguments for `enqueue`.
    public enum Arg {
        case buffer(CLBuffer)
        case int(Int32)
        case float(Float)
        /// Local memory of this many bytes.
        case local(Int)
    }

    /// The largest work-group size this kernel can run with on its device.
    public var maxWorkGroupSize: Int {
        var size = 0
        _ = clGetKernelWorkGroupInfo(kernel, context.info.deviceID, cl_kernel_work_group_info(CL_KERNEL_WORK_GROUP_SIZE), MemoryLayout<Int>.size, &size, nil)
        return size
    }

    /// Sets `args` and enqueues an NDRange of `global` work-items in groups of `local` (nil: the
    /// driver chooses). Returns the profiling event.
    @discardableResult
    public func enqueue(_ args: [Arg], global: [Int], local: [Int]? = nil) throws -> CLEvent {
        if boundArgs.count < args.count { boundArgs += Array(repeating: nil, count: args.count - boundArgs.count) }
        var set = 0
        for (i, arg) in args.enumerated() {
            let value: BoundArg
            switch arg {
            case .buffer(let b): value = .mem(b.serial)
            case .int(let v): value = .int(v)
            case .float(let v): value = .float(v.bitPattern)
            case .local(let bytes): value = .local(max(bytes, 4))
            }
            if boundArgs[i] == value { continue }
            boundArgs[i] = nil   // unknown until the call succeeds
            set += 1
            let status: cl_int
            switch arg {
            case .buffer(let b):
                var mem: cl_mem? = b.mem
                status = clSetKernelArg(kernel, cl_uint(i), MemoryLayout<cl_mem>.size, &mem)
            case .int(var v):
                status = clSetKernelArg(kernel, cl_uint(i), 4, &v)
            case .float(var v):
                status = clSetKernelArg(kernel, cl_uint(i), 4, &v)
            case .local(let bytes):
                status = clSetKernelArg(kernel, cl_uint(i), max(bytes, 4), nil)
            }
            try check(status, "clSetKernelArg(\(name), arg \(i))")
            boundArgs[i] = value
        }
        context.recorder?.argumentsSet(set)
        var event: cl_event?
        var g = global
        if let local {
            // Round the global size up to a multiple of the work-group size; kernels bound-check.
            for d in 0..<g.count { g[d] = (g[d] + local[d] - 1) / local[d] * local[d] }
            var l = local
            try check(clEnqueueNDRangeKernel(context.queue, kernel, cl_uint(g.count), nil, &g, &l, 0, nil, &event),
                      "clEnqueueNDRangeKernel(\(name), global \(g), local \(local))")
        } else {
            try check(clEnqueueNDRangeKernel(context.queue, kernel, cl_uint(g.count), nil, &g, nil, 0, nil, &event),
                      "clEnqueueNDRangeKernel(\(name), global \(g))")
        }
        let e = CLEvent(event!)
        context.recorder?.launched(name, e)
        return e
    }
}
