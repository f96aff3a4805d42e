import Foundation
import SGEOpenCL
import SGETensor
import SGEDeviceTestSupport
import XCTest

final class RuntimeTests: XCTestCase {
    func context() throws -> CLContext { try testDevice().device }

    func testDeviceFactsAreReported() throws {
        let info = try context().info
        XCTAssertFalse(info.name.isEmpty)
        XCTAssertGreaterThan(info.computeUnits, 0)
        XCTAssertGreaterThan(info.globalMemory, 0)
        XCTAssertGreaterThan(info.maxWorkGroupSize, 0)
        XCTAssertTrue(info.openCLCVersion.contains("OpenCL C"))
    }

    func testStatusNamesCoverOpenCLAndCLBlast() {
        XCTAssertEqual(OpenCLError.name(of: -54), "CL_INVALID_WORK_GROUP_SIZE")
        XCTAssertEqual(OpenCLError.name(of: 0), "CL_SUCCESS")
        XCTAssertEqual(OpenCLError.name(of: -1001), "CL_PLATFORM_NOT_FOUND_KHR")
        XCTAssertEqual(OpenCLError.clblastName(of: -2046), "CLBlastInvalidLocalMemUsage")
        XCTAssertEqual(OpenCLError.clblastName(of: -1017), "CLBlastInvalidDimension")
    }

    func testSyntaxErrorGivesTheBuildLog() throws {
        let ctx = try context()
        let source = "__kernel void broken(__global float *x) { x[0] = undefined_name + ; }"
        XCTAssertThrowsError(try ctx.kernel("broken", source: source, defines: ["WG": "64"])) { error in
            guard case OpenCLError.build(let kernel, let options, let log) = error else {
                return XCTFail("expected a build error, got \(error)")
            }
            XCTAssertEqual(kernel, "broken")
            XCTAssertEqual(options, "-DWG=64")
            XCTAssertTrue(log.contains("undefined_name") || log.contains("error"), "log: \(log)")
            XCTAssertTrue("\(error)".contains("Build log"))
        }
    }

    func testBadArgumentsGiveTheStatusName() throws {
        let ctx = try context()
        let k = try ctx.kernel("k", source: "__kernel void k(__global float *x, int n) { if (get_global_id(0) < n) x[get_global_id(0)] = 1; }")
        let b = try ctx.buffer(bytes: 64)
        // Work-group larger than the global size's divisor and the device limit: invalid.
        XCTAssertThrowsError(try k.enqueue([.buffer(b), .int(16)], global: [16], local: [ctx.info.maxWorkGroupSize * 2])) { error in
            guard case OpenCLError.api(let call, _, let name) = error else { return XCTFail("expected api error, got \(error)") }
            XCTAssertTrue(call.contains("clEnqueueNDRangeKernel"))
            XCTAssertTrue(name.hasPrefix("CL_INVALID"), name)
        }
        // Wrong argument index.
        XCTAssertThrowsError(try k.enqueue([.buffer(b), .int(16), .int(3)], global: [16])) { error in
            XCTAssertTrue("\(error)".contains("CL_INVALID_ARG_INDEX"), "\(error)")
        }
        // A CLBlast call with a zero dimension names the CLBlast status.
        XCTAssertThrowsError(try ctx.enqueueSgemm(.no, .no, m: 0, n: 4, k: 4, a: b, lda: 4, b: b, ldb: 4, c: b, ldc: 4)) { error in
            XCTAssertTrue("\(error)".contains("CLBlastInvalidDimension"), "\(error)")
        }
    }

    func testProgramsAreCachedInMemoryAndOnDisk() throws {
        let ctx = try context()
        // A source unique to this run, so the disk cache starts cold for it.
        let tag = UInt32.random(in: 0...UInt32.max)
        let source = "__kernel void cached_\(tag)(__global float *x) { x[get_global_id(0)] = \(tag).0f; }"
        let before = ctx.programs.stats
        _ = try ctx.kernel("cached_\(tag)", source: source)
        XCTAssertEqual(ctx.programs.stats.sourceBuilds, before.sourceBuilds + 1)
        _ = try ctx.kernel("cached_\(tag)", source: source)
        XCTAssertEqual(ctx.programs.stats.memoryHits, before.memoryHits + 1)
        XCTAssertEqual(ctx.programs.stats.sourceBuilds, before.sourceBuilds + 1, "second request must not rebuild")
        // The binary was written to the disk cache for the next process.
        let files = try FileManager.default.contentsOfDirectory(atPath: ProgramCache.cacheDirectory.appendingPathComponent("programs").path)
        XCTAssertFalse(files.filter { $0.hasSuffix(".bin") }.isEmpty)
    }

    func testUnreadableCachedBinaryIsIgnoredAndRebuilt() throws {
        let ctx = try context()
        let tag = UInt32.random(in: 0...UInt32.max)
        let source = "__kernel void garbage_\(tag)(__global float *x) { x[0] = 2.0f; }"
        // Pre-seed the cache file of this exact key with garbage: the build must still succeed.
        let key = "\(ctx.info.cacheIdentity)\n\n\(source)"
        let file = ProgramCache.cacheDirectory.appendingPathComponent("programs/\(ProgramCache.fileName(forKey: key))")
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data("not a program binary".utf8).write(to: file)
        let before = ctx.programs.stats
        _ = try ctx.kernel("garbage_\(tag)", source: source)
        XCTAssertEqual(ctx.programs.stats.sourceBuilds, before.sourceBuilds + 1)
        XCTAssertEqual(ctx.programs.stats.diskHits, before.diskHits)
    }

    /// A buffer over the device's max allocation is refused before the driver sees it (some
    /// drivers assert), as the typed memory error with the sizes.
    func testOversizedBufferIsATypedErrorBeforeTheDriver() throws {
        let ctx = try context()
        let bytes = Int(ctx.info.maxAllocation) + 4096
        XCTAssertThrowsError(try ctx.buffer(bytes: bytes)) { error in
            guard case SGEError.memory(let text) = error else { return XCTFail("expected SGEError.memory, got \(error)") }
            XCTAssertTrue(text.contains("\(bytes) bytes") && text.contains("smaller batch"), text)
        }
    }
}
