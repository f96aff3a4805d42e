import Foundation
import SGEOpenCL
import SGETensor

/// Picks the backend from `--device` / `SGE_DEVICE`: an index into `sge devices`' list, a
/// (case-insensitive) name substring, or `reference`. With neither: the first GPU, else the first
/// OpenCL device of any kind (PoCL on a machine without a GPU), else the reference backend.
public enum DeviceSelection {
    public struct Choice {
        public let backend: any Backend
        /// The OpenCL device, nil for the reference backend.
        public let info: DeviceInfo?
        /// Why this one was chosen ("SGE_DEVICE=1", "default: first GPU", ...).
        public let reason: String
    }

    /// The spec in effect: the explicit one, else `SGE_DEVICE`, else nil.
    public static func spec(_ explicit: String?) -> (String, String)? {
        if let explicit, !explicit.isEmpty { return (explicit, "--device \(explicit)") }
        if let env = ProcessInfo.processInfo.environment["SGE_DEVICE"], !env.isEmpty { return (env, "SGE_DEVICE=\(env)") }
        return nil
    }

    /// The device `spec` names among `devices`, or the default; nil means the reference backend.
    /// `localRank` (a rank's index on its machine under mpirun) picks GPU localRank mod GPUs by default.
    public static func resolve(_ spec: (String, String)?, devices: [DeviceInfo], localRank: Int = 0) throws -> (DeviceInfo?, String) {
        guard let (value, source) = spec else {
            let gpus = devices.filter(\.isGPU)
            if localRank > 0, !gpus.isEmpty { return (gpus[localRank % gpus.count], "default: local rank \(localRank)'s GPU") }
            if let gpu = devices.first(where: { $0.isGPU }) { return (gpu, "default: first GPU") }
            if let any = devices.first { return (any, "default: no GPU, first OpenCL device") }
            return (nil, "default: no OpenCL device found, using the reference backend")
        }
        let lowered = value.lowercased()
        if lowered == "reference" || lowered == "cpu-reference" || lowered == "ref" { return (nil, source) }
        let list = devices.isEmpty ? "no OpenCL devices are installed (install pocl-opencl-icd, or use --device reference)"
            : "devices: " + devices.map { "\($0.globalIndex): \($0.name)" }.joined(separator: "; ") + "; or 'reference'"
        if let index = Int(value) {
            guard index >= 0, index < devices.count else {
                throw SGEError.invalidArgument("\(source): no device with index \(index); \(list)")
            }
            return (devices[index], source)
        }
        if let match = devices.first(where: { $0.name.lowercased().contains(lowered) || $0.platformName.lowercased().contains(lowered) }) {
            return (match, source)
        }
        throw SGEError.invalidArgument("\(source): no device matches '\(value)'; \(list)")
    }

    /// Resolves and opens the backend.
    public static func choose(_ explicit: String? = nil, localRank: Int = 0) throws -> Choice {
        let devices = try Devices.all()
        let (info, reason) = try resolve(spec(explicit), devices: devices, localRank: localRank)
        if let info { return Choice(backend: try OpenCLBackend(info), info: info, reason: reason) }
        return Choice(backend: ReferenceBackend(), info: nil, reason: reason)
    }
}
