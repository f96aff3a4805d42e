import Foundation

/// Known-good CLBlast parameters and convolution choices shipped with sge, per device class (`ShippedTuning.json`,
/// embedded in the binary). They apply whenever the device has no tuning of its own stored by
/// `sge tune`, so a fresh machine's first run is tuned. Each entry records how it was measured; an
/// entry without kernel parameters records that CLBlast's defaults measured best for that class.
public struct ShippedTuning: Codable, Sendable, Equatable {
    public struct Entry: Codable, Sendable, Equatable {
        /// The device class, e.g. "pocl-avx512".
        public var name: String
        /// Substrings that must all occur (case-insensitively) in the platform name, the device
        /// name and the vendor; an absent list matches anything.
        public var platformContains: [String]?
        public var deviceContains: [String]?
        public var vendorContains: [String]?
        /// The device's CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT must equal this, when given. PoCL names
        /// a CPU after LLVM's CPU name (`pthread-skylake-avx512-…`, `pthread-icelake-server-…`,
        /// `pthread-znver3-…`), which rarely says its vector width; its native float width does
        /// (16 with AVX-512, 8 with AVX2), and the width is what CLBlast's parameters depend on.
        public var nativeFloatWidth: Int?
        /// Where and how the parameters were measured (command, machine, driver, GFLOP/s).
        public var measured: String
        public var xgemm: [String: Int]?
        public var xgemmDirect: [String: Int]?
        public var gemmRoutine: [String: Int]?
        /// Convolution algorithm choices measured on this class, by `ConvShapeKey` (what
        /// `ConvChoices` would store after timing them); they apply where the device has no stored
        /// choice for a shape.
        public var conv: [String: ConvChoiceRecord]?

        enum CodingKeys: String, CodingKey {
            case name, measured, xgemm, conv
            case xgemmDirect = "xgemm_direct", gemmRoutine = "gemm_routine"
            case platformContains = "platform_contains", deviceContains = "device_contains", vendorContains = "vendor_contains"
            case nativeFloatWidth = "native_float_width"
        }

        /// Whether `info`'s device belongs to this class.
        public func matches(_ info: DeviceInfo) -> Bool {
            matches(platform: info.platformName, device: info.name, vendor: info.vendor, nativeFloatWidth: info.nativeFloatVectorWidth)
        }

        /// Whether a device of these names (and native float vector width) belongs to this class.
        public func matches(platform: String, device: String, vendor: String, nativeFloatWidth width: Int) -> Bool {
            func all(_ needles: [String]?, in hay: String) -> Bool {
                (needles ?? []).allSatisfy { hay.lowercased().contains($0.lowercased()) }
            }
            return all(platformContains, in: platform) && all(deviceContains, in: device) && all(vendorContains, in: vendor)
                && (nativeFloatWidth.map { $0 == width } ?? true)
        }

        /// The entry as a tuning of `info`'s device.
        public func tuning(for info: DeviceInfo) -> CLBlastTuning {
            CLBlastTuning(device: info.cacheIdentity, xgemm: xgemm, xgemmDirect: xgemmDirect, gemmRoutine: gemmRoutine)
        }

        /// The entry as a tuner candidate (nil unless both kernels and the threshold are given).
        public var candidate: GemmCandidates.Triple? {
            guard let xgemm, let xgemmDirect, let t = gemmRoutine?["XGEMM_MIN_INDIRECT_SIZE"] else { return nil }
            return GemmCandidates.Triple(xgemm: xgemm, direct: xgemmDirect, threshold: t)
        }
    }

    public var version: Int
    public var classes: [Entry]

    /// The embedded table (empty, with a warning on stderr, if it cannot be decoded).
    public static let embedded: ShippedTuning = {
        do { return try decode(Data(PackageResources.ShippedTuning_json)) } catch {
            FileHandle.standardError.write(Data("sge: warning: the shipped CLBlast parameters cannot be read (\(error)); using CLBlast's defaults\n".utf8))
            return ShippedTuning(version: 1, classes: [])
        }
    }()

    public static func decode(_ data: Data) throws -> ShippedTuning {
        let table = try JSONDecoder().decode(ShippedTuning.self, from: data)
        for e in table.classes {
            for (kernel, params) in [("xgemm", e.xgemm), ("xgemm_direct", e.xgemmDirect), ("gemm_routine", e.gemmRoutine)] {
                if let params, params.values.contains(where: { $0 < 0 }) {
                    throw TuningError("shipped tuning '\(e.name)': negative \(kernel) parameter")
                }
            }
        }
        return table
    }

    /// The first class `info`'s device belongs to, if any; `SGE_SHIPPED_CLASS` names a class to use
    /// instead (any device), or `none` for none.
    public func match(_ info: DeviceInfo) -> Entry? { match(info, forced: Self.forcedClass) }

    /// `SGE_SHIPPED_CLASS`, read once (the convolution choice asks for the class on every call); a
    /// name the embedded table lacks is reported on stderr then, with the table's names.
    public static let forcedClass: String? = {
        guard let name = ProcessInfo.processInfo.environment["SGE_SHIPPED_CLASS"], !name.isEmpty else { return nil }
        let names = embedded.classes.map(\.name)
        if name != "none" && !names.contains(name) {
            FileHandle.standardError.write(Data(("sge: warning: SGE_SHIPPED_CLASS=\(name) is not a shipped class ("
                + names.joined(separator: ", ") + " or none); using no shipped parameters\n").utf8))
        }
        return name
    }()

    /// `match` with the class forced by name: `none`, or a name the table lacks, gives none.
    public func match(_ info: DeviceInfo, forced: String?) -> Entry? {
        guard let forced, !forced.isEmpty else { return classes.first { $0.matches(info) } }
        return classes.first { $0.name == forced }
    }
}
