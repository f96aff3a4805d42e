/// Errors for bad input anywhere in sge. Each message names what was wrong and where, so a user
/// can act on it; only the CLI turns these into exit codes.
public enum SGEError: Error, CustomStringConvertible, Equatable {
    /// A tensor has the wrong shape for an operation (the message names the op, tensor and shapes).
    case shape(String)
    /// An argument is out of range or inconsistent (groups, strides, learning rate, ...).
    case invalidArgument(String)
    /// A file exists but its content is not what it claims to be.
    case corruptFile(path: String, reason: String)
    /// A file could not be read or written.
    case io(path: String, reason: String)
    /// A computation produced NaN or Inf.
    case numeric(String)
    /// Work needs more memory than the device (or host) has: the message gives the need, the
    /// limit and what to change (for training: a batch size that fits).
    case memory(String)

    public var description: String {
        switch self {
        case .shape(let message): return "shape error: \(message)"
        case .invalidArgument(let message): return "invalid argument: \(message)"
        case .corruptFile(let path, let reason): return "\(path): corrupt or unsupported file: \(reason)"
        case .io(let path, let reason): return "\(path): \(reason)"
        case .numeric(let message): return "numeric error: \(message)"
        case .memory(let message): return "not enough memory: \(message)"
        }
    }
}
