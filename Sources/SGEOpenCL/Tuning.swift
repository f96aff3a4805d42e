import COpenCL
import Foundation
import SGETensor

// CLBlast tuning for one device: a stored parameter set (JSON, one file per device and driver),
// applied with CLBlastOverrideParameters when the device's CLContext is created. The search that
// finds it (GemmTuner, module SGETuning) works as follows.
//
// CLBlast's GEMM routines pick one of two kernels per call (CLBlast 1.5.3, Xgemm::UseDirectKernel):
// XgemmDirect (one generic kernel) when m·n·k < XGEMM_MIN_INDIRECT_SIZE³ ("GemmRoutine"), else
// Xgemm (a fast kernel on padded/transposed copies made by extra kernels). Each shape therefore runs
// exactly one of the two, so the tuner measures every Xgemm candidate with the threshold forced to
// "always indirect" and every XgemmDirect candidate with "always direct", then picks the threshold
// and the pair of kernels that minimise the summed (count-weighted) time over the shapes:
//   total(t, x, d) = Σ_s count_s · (mnk_s < t³ ? T_direct[d][s] : T_indirect[x][s]).
// Every timed run is first validated against a Double reference GEMM; a candidate whose result is
// wrong anywhere is dropped and never stored.

/// A stored CLBlast parameter set for one device and driver. A nil kernel entry keeps CLBlast's
/// default for that kernel.
public struct CLBlastTuning: Codable, Equatable, Sendable {
    public struct ShapeResult: Codable, Equatable, Sendable {
        public var shape: String
        public var before: Double  // GFLOP/s with CLBlast's defaults
        public var after: Double   // GFLOP/s tuned
        public init(shape: String, before: Double, after: Double) { (self.shape, self.before, self.after) = (shape, before, after) }
    }

    public var version = 1
    /// `DeviceInfo.cacheIdentity` of the device it was tuned on.
    public var device: String
    public var created: String
    public var xgemm: [String: Int]?
    public var xgemmDirect: [String: Int]?
    public var gemmRoutine: [String: Int]?
    public var results: [ShapeResult]

    public init(device: String, xgemm: [String: Int]?, xgemmDirect: [String: Int]?, gemmRoutine: [String: Int]?,
                results: [ShapeResult] = []) {
        self.device = device
        self.created = ISO8601DateFormatter().string(from: Date())
        (self.xgemm, self.xgemmDirect, self.gemmRoutine, self.results) = (xgemm, xgemmDirect, gemmRoutine, results)
    }

    /// Where the tuning of `info`'s device and driver lives: `<cache>/tuning/<hash>.json`.
    public static func file(for info: DeviceInfo) -> URL {
        ProgramCache.cacheDirectory.appendingPathComponent("tuning/\(fnv1a(info.cacheIdentity)).json")
    }

    /// The stored tuning of `info`'s device, or nil when there is none. Throws when the file
    /// exists but cannot be read or decoded, or belongs to another device.
    public static func load(for info: DeviceInfo) throws -> CLBlastTuning? {
        let url = file(for: info)
        guard let tuning = try readTuningJSON(CLBlastTuning.self, from: url, what: "tuning file") else { return nil }
        guard tuning.device == info.cacheIdentity else {
            throw TuningError("tuning file \(url.path) is for '\(tuning.device)', not '\(info.cacheIdentity)'")
        }
        return tuning
    }

    /// Writes this tuning as `info`'s (atomically: temp file, then rename). Returns the path.
    @discardableResult
    public func save(for info: DeviceInfo) throws -> URL {
        let url = Self.file(for: info)
        try writeTuningJSON(self, to: url)
        return url
    }

    /// Deletes `info`'s stored tuning; returns whether there was one.
    @discardableResult
    public static func reset(for info: DeviceInfo) throws -> Bool { try removeIfPresent(file(for: info)) }

    /// Overrides CLBlast's parameters on `context`'s device with this set (takes effect at the
    /// next GEMM call; CLBlast recompiles the routine).
    public func apply(to context: CLContext) throws {
        if let xgemm { try context.overrideCLBlastParameters(kernel: "Xgemm", xgemm) }
        if let xgemmDirect { try context.overrideCLBlastParameters(kernel: "XgemmDirect", xgemmDirect) }
        if let gemmRoutine { try context.overrideCLBlastParameters(kernel: "GemmRoutine", gemmRoutine) }
    }

    /// Whether `CLContext.shared(for:)` applies stored tuning (the tuner turns it off to measure
    /// CLBlast's defaults).
    nonisolated(unsafe) public static var autoApply = true

    /// Applies `context`'s stored tuning if any, else the shipped parameters of its device class
    /// (the hook in `CLContext.shared(for:)`); an unreadable file or a rejected parameter set is
    /// ignored with a warning. Returns what was applied, or nil.
    static func applyStored(to context: CLContext) -> AppliedTuning? {
        guard autoApply else { return nil }
        let verbose = ProcessInfo.processInfo.environment["SGE_VERBOSE"].map { $0 != "0" && !$0.isEmpty } ?? false
        do {
            if let tuning = try load(for: context.info) {
                try tuning.apply(to: context)
                let url = file(for: context.info)
                if verbose { FileHandle.standardError.write(Data("[sge] applied CLBlast tuning from \(url.path)\n".utf8)) }
                return .stored(url)
            }
        } catch {
            FileHandle.standardError.write(Data("sge: warning: ignoring CLBlast tuning: \(error) (run `sge tune --reset`)\n".utf8))
        }
        guard let entry = ShippedTuning.embedded.match(context.info) else { return nil }
        if let c = entry.candidate, !GemmCandidates.isValidXgemm(c.xgemm, context.info) || !GemmCandidates.isValidDirect(c.direct, context.info) {
            FileHandle.standardError.write(Data("sge: warning: the shipped CLBlast parameters for \(entry.name) exceed \(context.info.name)'s limits; using CLBlast's defaults\n".utf8))
            return nil
        }
        do {
            try entry.tuning(for: context.info).apply(to: context)
            if verbose { FileHandle.standardError.write(Data("[sge] applied shipped CLBlast parameters for \(entry.name)\n".utf8)) }
            return .shipped(entry.name)
        } catch {
            FileHandle.standardError.write(Data("sge: warning: the shipped CLBlast parameters for \(entry.name) were refused: \(error)\n".utf8))
            return nil
        }
    }
}

/// Which CLBlast parameters a context runs with besides CLBlast's defaults.
public enum AppliedTuning: Sendable, Equatable, CustomStringConvertible {
    /// A tuning stored by `sge tune` on this machine.
    case stored(URL)
    /// The shipped known-good parameters of a device class.
    case shipped(String)
    public var description: String {
        switch self {
        case .stored(let url): "tuned on this machine (\(url.path))"
        case .shipped(let name): "shipped parameters for \(name)"
        }
    }
}

/// Candidate parameter sets, filtered by CLBlast's constraints (src/tuning/kernels/xgemm.hpp and
/// xgemm_direct.hpp of 1.5.3) and the device's work-group size and local memory.
public enum GemmCandidates {
    /// Xgemm sets (all 16 parameters), the CPU-friendly hand-picked ones first (wide vectors,
    /// many outputs per work-item, no local memory), then the rest of a small grid.
    public static func xgemm(_ info: DeviceInfo) -> [[String: Int]] {
        func make(_ mwg: Int, _ nwg: Int, _ kwg: Int, _ mdimc: Int, _ ndimc: Int, _ vwm: Int, _ vwn: Int,
                  kwi: Int = 2, s: Int = 0, strm: Int = 0, strn: Int = 0) -> [String: Int] {
            ["GEMMK": 0, "KREG": 1, "MWG": mwg, "NWG": nwg, "KWG": kwg, "MDIMC": mdimc, "NDIMC": ndimc, "MDIMA": mdimc,
             "NDIMB": ndimc, "VWM": vwm, "VWN": vwn, "KWI": kwi, "SA": s, "SB": s, "STRM": strm, "STRN": strn]
        }
        var list: [[String: Int]] = [
            // Measured best on PoCL (2-core AVX-512): 2×2 work-items of 16-wide vectors, no local
            // memory — 69 GFLOP/s at 512³ vs 12.6 with CLBlast's defaults (`sge bench gemm --override`).
            make(32, 32, 16, 2, 2, 16, 16, kwi: 1), make(64, 64, 16, 4, 4, 16, 16, kwi: 1),
            make(32, 128, 32, 8, 8, 4, 16), make(64, 128, 32, 8, 8, 8, 16), make(64, 64, 32, 8, 8, 4, 8),
            make(16, 64, 16, 4, 4, 4, 16), make(32, 64, 32, 8, 4, 4, 16), make(64, 64, 16, 8, 8, 8, 8, kwi: 1),
            make(128, 128, 32, 16, 16, 8, 8), make(64, 64, 32, 16, 16, 4, 4, s: 1), make(32, 32, 32, 8, 8, 4, 4),
            make(128, 64, 32, 16, 8, 8, 8, strm: 1), make(64, 128, 16, 8, 8, 8, 16, kwi: 1, strn: 1), make(16, 128, 32, 4, 8, 4, 16),
        ]
        for mwg in [16, 32, 64, 128] {
            for nwg in [32, 64, 128] {
                for (mdimc, ndimc) in [(4, 4), (8, 8), (4, 8), (8, 4), (16, 16)] {
                    for vwm in [4, 8, 16] {
                        for vwn in [4, 8, 16] {
                            for kwg in [16, 32] {
                                for s in [0, 1] { list.append(make(mwg, nwg, kwg, mdimc, ndimc, vwm, vwn, s: s)) }
                            }
                        }
                    }
                }
            }
        }
        var seen = Set<[String: Int]>()
        return list.filter { isValidXgemm($0, info) && seen.insert($0).inserted }
    }

    /// XgemmDirect sets (all 10 parameters).
    public static func xgemmDirect(_ info: DeviceInfo) -> [[String: Int]] {
        func make(_ wgd: Int, _ mdimcd: Int, _ ndimcd: Int, _ vwmd: Int, _ vwnd: Int, kwid: Int = 2, pad: Int = 1) -> [String: Int] {
            ["WGD": wgd, "MDIMCD": mdimcd, "NDIMCD": ndimcd, "MDIMAD": mdimcd, "NDIMBD": ndimcd, "VWMD": vwmd, "VWND": vwnd,
             "KWID": kwid, "PADA": pad, "PADB": pad]
        }
        // Ordered by measurements on PoCL (2-core AVX-512 Xeon): 4×4 work-items of 8×8 outputs each first.
        var list: [[String: Int]] = [
            make(32, 4, 4, 8, 8), make(64, 8, 8, 8, 8), make(32, 4, 4, 8, 8, kwid: 8), make(16, 2, 2, 8, 8),
            make(64, 8, 8, 4, 8, kwid: 1, pad: 0), make(32, 8, 4, 4, 8), make(32, 8, 8, 4, 4), make(16, 4, 4, 4, 4),
            make(64, 16, 16, 4, 4), make(32, 8, 8, 2, 4, kwid: 8),
        ]
        for wgd in [16, 32, 64] {
            for (m, n) in [(2, 2), (4, 4), (8, 8), (4, 8), (8, 4), (16, 16)] {
                for v in [1, 2, 4, 8, 16] {
                    for kwid in [1, 2, 8] { list.append(make(wgd, m, n, v, v, kwid: kwid)) }
                }
            }
        }
        var seen = Set<[String: Int]>()
        return list.filter { isValidDirect($0, info) && seen.insert($0).inserted }
    }

    /// CLBlast's Xgemm constraints plus the device limits.
    public static func isValidXgemm(_ p: [String: Int], _ info: DeviceInfo) -> Bool {
        guard let mwg = p["MWG"], let nwg = p["NWG"], let kwg = p["KWG"], let mdimc = p["MDIMC"], let ndimc = p["NDIMC"],
              let mdima = p["MDIMA"], let ndimb = p["NDIMB"], let vwm = p["VWM"], let vwn = p["VWN"], let kwi = p["KWI"],
              let sa = p["SA"], let sb = p["SB"], [mwg, nwg, kwg, mdimc, ndimc, mdima, ndimb, vwm, vwn, kwi].allSatisfy({ $0 > 0 })
        else { return false }
        let threads = mdimc * ndimc
        return kwg % kwi == 0 && mwg % (mdimc * vwm) == 0 && nwg % (ndimc * vwn) == 0
            && mwg % (mdima * vwm) == 0 && nwg % (ndimb * vwn) == 0
            && threads % mdima == 0 && threads % ndimb == 0 && kwg % (threads / mdima) == 0 && kwg % (threads / ndimb) == 0
            && threads <= info.maxWorkGroupSize && UInt64((sa * kwg * mwg + sb * kwg * nwg) * 4) <= info.localMemory
    }

    /// CLBlast's XgemmDirect constraints plus the device limits (it always tiles A and B in local memory).
    public static func isValidDirect(_ p: [String: Int], _ info: DeviceInfo) -> Bool {
        guard let wgd = p["WGD"], let mdimcd = p["MDIMCD"], let ndimcd = p["NDIMCD"], let mdimad = p["MDIMAD"],
              let ndimbd = p["NDIMBD"], let vwmd = p["VWMD"], let vwnd = p["VWND"], let kwid = p["KWID"],
              let pada = p["PADA"], let padb = p["PADB"], [wgd, mdimcd, ndimcd, mdimad, ndimbd, vwmd, vwnd, kwid].allSatisfy({ $0 > 0 })
        else { return false }
        let threads = mdimcd * ndimcd
        return wgd % kwid == 0 && wgd % (mdimcd * vwmd) == 0 && wgd % (ndimcd * vwnd) == 0
            && wgd % (mdimad * vwmd) == 0 && wgd % (ndimbd * vwnd) == 0
            && threads % mdimad == 0 && threads % ndimbd == 0 && wgd % (threads / mdimad) == 0 && wgd % (threads / ndimbd) == 0
            && threads <= info.maxWorkGroupSize && UInt64((wgd * (wgd + pada) + wgd * (wgd + padb)) * 4) <= info.localMemory
    }

    /// XGEMM_MIN_INDIRECT_SIZE values considered (GEMMs with m·n·k below the cube run
    /// XgemmDirect), in order of preference when they tie: a middle value keeps shapes near the
    /// measured ones on the same side.
    public static let thresholds = [256, 192, 384, 128, 512, 96, 768, 64, 1024, 1, 4096]

    /// One tuning candidate: both kernels' sets and the threshold, measured with one build.
    public struct Triple: Sendable {
        public var xgemm: [String: Int], direct: [String: Int], threshold: Int
        public init(xgemm: [String: Int], direct: [String: Int], threshold: Int) {
            (self.xgemm, self.direct, self.threshold) = (xgemm, direct, threshold)
        }
    }

    /// The candidates in order: the i-th Xgemm set with the i-th XgemmDirect set; mostly with
    /// threshold 256 (the model's per-image GEMMs, m·n·k ≤ 122³, run direct; 512³ runs Xgemm),
    /// every sixth with threshold 1 (everything through Xgemm) so Xgemm is also measured on the
    /// model's shapes. (With CLBlast 1.5.3 on PoCL the indirect strided-batched path gives wrong
    /// results for the 576×49×64 TN grad-input GEMM; the tuner records that and keeps it direct.)
    public static func triples(_ info: DeviceInfo) -> [Triple] {
        let xs = xgemm(info), ds = xgemmDirect(info)
        return (0..<max(xs.count, ds.count)).map { i in
            Triple(xgemm: xs[i % xs.count], direct: ds[i % ds.count], threshold: i % 6 == 5 ? 1 : 256)
        }
    }
}

/// A tuning file that cannot be used, or a tuning run that cannot proceed.
public struct TuningError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

// MARK: the tuning files (CLBlastTuning, ConvChoices)

/// Decodes `url` as `T`, nil when the file does not exist; a file that cannot be read or decoded
/// throws, naming it.
func readTuningJSON<T: Decodable>(_ type: T.Type, from url: URL, what: String) throws -> T? {
    guard FileManager.default.fileExists(atPath: url.path) else { return nil }
    do { return try JSONDecoder().decode(T.self, from: Data(contentsOf: url)) } catch {
        throw TuningError("unreadable \(what) \(url.path): \(error)")
    }
}

/// Writes `value` as sorted, pretty JSON to `url`, atomically (`AtomicFile`).
func writeTuningJSON<T: Encodable>(_ value: T, to url: URL) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    try AtomicFile.write(try encoder.encode(value), to: url.path)
}

/// Deletes `url`; returns whether it existed.
func removeIfPresent(_ url: URL) throws -> Bool {
    guard FileManager.default.fileExists(atPath: url.path) else { return false }
    try FileManager.default.removeItem(at: url)
    return true
}
