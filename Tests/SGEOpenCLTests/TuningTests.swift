import Foundation
@testable import SGEOpenCL
import SGEDeviceTestSupport
import XCTest

/// Stored CLBlast tuning (round trip, hook on context creation, corrupt files), candidate
/// constraints and the tuner's result check. Every test points XDG_CACHE_HOME at a fresh temp
/// folder so the user's tuning is never read or clobbered. Tests that would override CLBlast's
/// parameters for the whole test process (forcing every later GEMM test to rebuild CLBlast's
/// programs, ~20-30 s each on PoCL) run only with SGE_TUNE_TEST=1.
final class TuningTests: XCTestCase {
    private var savedCache: String?
    private var cacheDir: URL!

    override func setUpWithError() throws {
        // Initialise OpenCL first: PoCL fixes its own kernel-cache folder from XDG_CACHE_HOME at
        // platform start-up, and that folder must outlive the test's temporary one.
        _ = try? Devices.all()
        savedCache = ProcessInfo.processInfo.environment["XDG_CACHE_HOME"]
        cacheDir = FileManager.default.temporaryDirectory.appendingPathComponent("sge-tuning-test-\(UUID().uuidString)")
        setenv("XDG_CACHE_HOME", cacheDir.path, 1)
    }

    override func tearDownWithError() throws {
        if let savedCache { setenv("XDG_CACHE_HOME", savedCache, 1) } else { unsetenv("XDG_CACHE_HOME") }
        try? FileManager.default.removeItem(at: cacheDir)
    }

    private func info() throws -> DeviceInfo { try testDevice().device.info }

    private let sampleXgemm = ["GEMMK": 0, "KREG": 1, "MWG": 64, "NWG": 64, "KWG": 32, "MDIMC": 8, "NDIMC": 8, "MDIMA": 8, "NDIMB": 8,
                               "VWM": 4, "VWN": 8, "KWI": 2, "SA": 0, "SB": 0, "STRM": 0, "STRN": 0]
    private let sampleDirect = ["WGD": 32, "MDIMCD": 8, "NDIMCD": 8, "MDIMAD": 8, "NDIMBD": 8, "VWMD": 4, "VWND": 4, "KWID": 2,
                                "PADA": 1, "PADB": 1]

    func testStoredTuningRoundTripsAndIsAppliedOnContextCreation() throws {
        let info = try info()
        XCTAssertNil(try CLBlastTuning.load(for: info), "fresh cache folder must hold no tuning")
        let full = CLBlastTuning(device: info.cacheIdentity, xgemm: sampleXgemm, xgemmDirect: sampleDirect,
                                 gemmRoutine: ["XGEMM_MIN_INDIRECT_SIZE": 256],
                                 results: [.init(shape: "square NN 512×512×512", before: 12.5, after: 40.25)])
        let url = try full.save(for: info)
        XCTAssertTrue(url.path.hasPrefix(cacheDir.path + "/sge/tuning/"), url.path)
        XCTAssertEqual(try CLBlastTuning.load(for: info), full)

        // The hook CLContext.shared(for:) runs on a new context. A set without kernel entries keeps
        // CLBlast's parameters, so the rest of the test process is unaffected.
        let neutral = CLBlastTuning(device: info.cacheIdentity, xgemm: nil, xgemmDirect: nil, gemmRoutine: nil)
        try neutral.save(for: info)
        let context = try CLContext(info: info)
        XCTAssertEqual(CLBlastTuning.applyStored(to: context), .stored(url))

        XCTAssertTrue(try CLBlastTuning.reset(for: info))
        XCTAssertFalse(FileManager.default.fileExists(atPath: url.path))
        XCTAssertFalse(try CLBlastTuning.reset(for: info))
        // Without a stored tuning, the shipped parameters of the device's class apply, if any.
        XCTAssertEqual(CLBlastTuning.applyStored(to: context), ShippedTuning.embedded.match(info).map { .shipped($0.name) })
    }

    /// The shipped table decodes, every entry is complete (both kernels and the threshold), names
    /// how it was measured, is within CLBlast's constraints on the test device where it matches it,
    /// and matches devices by its rules; a bad table is an error, not a crash.
    func testShippedTuningTableIsCompleteAndValid() throws {
        let table = ShippedTuning.embedded
        XCTAssertEqual(table, try ShippedTuning.decode(Data(PackageResources.ShippedTuning_json)))
        let device = try info()
        for e in table.classes {
            // Either CLBlast's defaults (no kernel given: they measured best) or a complete set.
            let given = [e.xgemm != nil, e.xgemmDirect != nil, e.gemmRoutine != nil]
            XCTAssertTrue(given.allSatisfy { $0 } || given.allSatisfy { !$0 }, "\(e.name): give xgemm, xgemm_direct and gemm_routine together or none")
            XCTAssertFalse(e.measured.isEmpty, "\(e.name): say how the parameters were measured")
            if let c = e.candidate, e.matches(device) {
                XCTAssertTrue(GemmCandidates.isValidXgemm(c.xgemm, device), "\(e.name) xgemm")
                XCTAssertTrue(GemmCandidates.isValidDirect(c.direct, device), "\(e.name) xgemm_direct")
            }
        }
        // Classes by the driver's name for the CPU and its native float width: PoCL names CPUs after
        // LLVM's CPU name, so an AVX-512 Ice Lake or Zen 4 must not fall to the AVX2 class.
        func shipped(_ platform: String, _ device: String, _ vendor: String, width: Int) -> String? {
            table.classes.first { $0.matches(platform: platform, device: device, vendor: vendor, nativeFloatWidth: width) }?.name
        }
        let pocl = "Portable Computing Language"
        XCTAssertEqual(shipped(pocl, "pthread-skylake-avx512-Intel(R) Xeon(R) Processor", "GenuineIntel", width: 16), "pocl-avx512")
        XCTAssertEqual(shipped(pocl, "pthread-icelake-server-Intel(R) Xeon(R) Platinum 8375C", "GenuineIntel", width: 16), "pocl-avx512")
        XCTAssertEqual(shipped(pocl, "pthread-znver4-AMD EPYC 9R14", "AuthenticAMD", width: 16), "pocl-avx512")
        XCTAssertEqual(shipped(pocl, "pthread-znver3-AMD EPYC 7B13", "AuthenticAMD", width: 8), "pocl-avx2")
        XCTAssertEqual(shipped(pocl, "pthread-haswell-Intel(R) Xeon(R) CPU E5-2680 v3", "GenuineIntel", width: 8), "pocl-avx2")
        XCTAssertNil(shipped(pocl, "pthread-nehalem-Intel(R) Core(TM) i7 950", "GenuineIntel", width: 4), "SSE only: no class, CLBlast's defaults")
        XCTAssertEqual(shipped("NVIDIA CUDA", "NVIDIA H200", "NVIDIA Corporation", width: 1), "nvidia")
        XCTAssertNil(shipped("AMD Accelerated Parallel Processing", "gfx90a avx512", "Advanced Micro Devices, Inc.", width: 16))
        // SGE_SHIPPED_CLASS forces a class by name (or none); an unknown name gives none.
        XCTAssertEqual(table.match(device, forced: "pocl-avx2")?.name, "pocl-avx2")
        XCTAssertEqual(table.match(device, forced: "nvidia")?.name, "nvidia")
        XCTAssertNil(table.match(device, forced: "none"))
        XCTAssertNil(table.match(device, forced: "pocl-sse9"))
        XCTAssertEqual(table.match(device, forced: nil), table.classes.first { $0.matches(device) })
        XCTAssertThrowsError(try ShippedTuning.decode(Data(#"{"version": 1, "classes": [{"name": "x", "measured": "m", "xgemm": {"MWG": -1}}]}"#.utf8)))
        XCTAssertThrowsError(try ShippedTuning.decode(Data("not json".utf8)))
    }

    func testCorruptOrForeignTuningFileIsIgnored() throws {
        let info = try info()
        let url = CLBlastTuning.file(for: info)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data("{\"version\": 1, \"xgemm\": [tru".utf8).write(to: url)
        XCTAssertThrowsError(try CLBlastTuning.load(for: info)) { XCTAssertTrue("\($0)".contains("unreadable tuning file"), "\($0)") }
        let context = try CLContext(info: info)
        XCTAssertEqual(CLBlastTuning.applyStored(to: context), ShippedTuning.embedded.match(info).map { .shipped($0.name) },
                       "a corrupt file must be ignored, not applied")

        // A file for another device or driver (e.g. copied cache) is refused too.
        try CLBlastTuning(device: "Other|GPU|Vendor|1.0|OpenCL 3.0", xgemm: sampleXgemm, xgemmDirect: nil, gemmRoutine: nil).save(for: info)
        XCTAssertThrowsError(try CLBlastTuning.load(for: info)) { XCTAssertTrue("\($0)".contains("is for 'Other"), "\($0)") }
        XCTAssertEqual(CLBlastTuning.applyStored(to: context), ShippedTuning.embedded.match(info).map { .shipped($0.name) })
    }

    func testCandidatesSatisfyCLBlastConstraints() throws {
        let info = try info()
        let xs = GemmCandidates.xgemm(info), ds = GemmCandidates.xgemmDirect(info)
        XCTAssertGreaterThan(xs.count, 10)
        XCTAssertGreaterThan(ds.count, 5)
        XCTAssertEqual(Set(xs.map { $0.count }), [16], "Xgemm overrides need all 16 parameters")
        XCTAssertEqual(Set(ds.map { $0.count }), [10], "XgemmDirect overrides need all 10 parameters")
        for p in xs {
            XCTAssertEqual(p["MWG"]! % (p["MDIMC"]! * p["VWM"]!), 0)
            XCTAssertEqual(p["NWG"]! % (p["NDIMC"]! * p["VWN"]!), 0)
            XCTAssertEqual(p["KWG"]! % p["KWI"]!, 0)
            XCTAssertLessThanOrEqual(p["MDIMC"]! * p["NDIMC"]!, info.maxWorkGroupSize)
        }
        // Known-invalid sets are refused: MWG not a multiple of MDIMC·VWM; KWG not a multiple of KWI;
        // XgemmDirect with more threads than a work-group may hold.
        var bad = sampleXgemm
        bad["MWG"] = 48
        XCTAssertFalse(GemmCandidates.isValidXgemm(bad, info))
        bad = sampleXgemm
        bad["KWI"] = 3
        XCTAssertFalse(GemmCandidates.isValidXgemm(bad, info))
        XCTAssertTrue(GemmCandidates.isValidXgemm(sampleXgemm, info))
        var badDirect = sampleDirect
        (badDirect["WGD"], badDirect["MDIMCD"], badDirect["NDIMCD"], badDirect["MDIMAD"], badDirect["NDIMBD"]) = (256, 128, 128, 128, 128)
        (badDirect["VWMD"], badDirect["VWND"]) = (1, 1)
        XCTAssertFalse(GemmCandidates.isValidDirect(badDirect, info))
        XCTAssertTrue(GemmCandidates.isValidDirect(sampleDirect, info))
    }
}
