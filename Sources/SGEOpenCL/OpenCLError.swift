import COpenCL

/// A failed OpenCL or CLBlast call, a failed kernel build, or no usable device.
public enum OpenCLError: Error, CustomStringConvertible {
    /// `call` returned `code`, whose symbolic name is `name`.
    case api(call: String, code: Int32, name: String)
    /// CLBlast routine `call` returned `code` (`name`).
    case clblast(call: String, code: Int32, name: String)
    /// The program containing `kernel` failed to build with `options`; `log` is the compiler's log.
    case build(kernel: String, options: String, log: String)
    /// No OpenCL platform or device matched.
    case noDevice(String)

    public var description: String {
        switch self {
        case .api(let call, let code, let name): return "OpenCL call \(call) failed: \(name) (\(code))"
        case .clblast(let call, let code, let name): return "CLBlast \(call) failed: \(name) (\(code))"
        case .build(let kernel, let options, let log):
            return "OpenCL build of '\(kernel)' failed (options: \(options.isEmpty ? "none" : options)). Build log:\n\(log)"
        case .noDevice(let message): return "no OpenCL device: \(message)"
        }
    }

    /// The symbolic name of an OpenCL status code.
    public static func name(of code: Int32) -> String {
        if let p = sge_cl_status_name(code) { return String(cString: p) }
        return "unknown OpenCL status"
    }

    /// The symbolic name of a CLBlast status code.
    public static func clblastName(of code: Int32) -> String {
        if let p = sge_clblast_status_name(code) { return String(cString: p) }
        return "unknown CLBlast status"
    }
}

/// Throws `OpenCLError.api` naming `call` unless `status` is CL_SUCCESS.
@inline(__always)
public func check(_ status: cl_int, _ call: @autoclosure () -> String) throws {
    if status != CL_SUCCESS {
        throw OpenCLError.api(call: call(), code: status, name: OpenCLError.name(of: status))
    }
}

/// Throws `OpenCLError.clblast` naming `call` unless `status` is CLBlastSuccess.
@inline(__always)
func checkBlast(_ status: CLBlastStatusCode, _ call: @autoclosure () -> String) throws {
    if status != CLBlastSuccess {
        let code = Int32(status.rawValue)
        throw OpenCLError.clblast(call: call(), code: code, name: OpenCLError.clblastName(of: code))
    }
}
