import Foundation
import SGETensor
import XCTest

/// Integrity hashes in safetensors, stale temporary files, and the one comparison rule.
final class IntegrityTests: XCTestCase {
    var dir: String!

    override func setUpWithError() throws {
        dir = (NSTemporaryDirectory() as NSString).appendingPathComponent("sge-integrity-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    func sample() -> SafeTensors {
        SafeTensors(tensors: ["a.weight": HostTensor(shape: [2, 3], data: [1, 2, 3, 4, 5, 6]), "b.bias": HostTensor(shape: [4], data: [0.5, -1, 2, 8])],
                    metadata: ["epoch": "3"])
    }

    /// The byte offset of tensor `name`'s data in an encoded file.
    func dataOffset(_ bytes: Data, _ name: String) throws -> Int {
        let headerLength = Int(bytes.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        let header = try JSONSerialization.jsonObject(with: bytes[8..<(8 + headerLength)]) as! [String: Any]
        let offsets = (header[name] as! [String: Any])["data_offsets"] as! [Int]
        return 8 + headerLength + offsets[0]
    }

    func testEveryTensorIsHashedAndVerified() throws {
        let bytes = try sample().encode()
        let back = try SafeTensors.decode(bytes, path: "x")
        XCTAssertEqual(back.verifiedTensors, ["a.weight", "b.bias"])
        XCTAssertEqual(back.metadata, ["epoch": "3"], "hash entries are checked and kept out of the metadata")
        XCTAssertEqual(back.tensors["b.bias"]?.data, [0.5, -1, 2, 8])
    }

    /// Finding 1 at the file level: a tensor's bytes overwritten with the header intact.
    func testOverwrittenTensorBytesAreRejectedNamingTheTensor() throws {
        var bytes = try sample().encode()
        let at = try dataOffset(bytes, "b.bias") + 4
        bytes[at] ^= 0x40
        XCTAssertThrowsError(try SafeTensors.decode(bytes, path: "ckpt.safetensors")) { error in
            guard case SGEError.corruptFile(let path, let reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, "ckpt.safetensors")
            XCTAssertTrue(reason.contains("'b.bias'") && reason.contains("hash"), reason)
        }
    }

    func testRemovedHashOrExtraTensorIsRejected() throws {
        // A file whose metadata hashes a tensor it does not have.
        var file = SafeTensors(tensors: ["x": HostTensor(shape: [1], data: [1])])
        file.metadata["hash.y"] = "fnv1a64:0000000000000000"
        let encoded = try file.encode()
        // encode() rewrites hash entries from the tensors, so hand-edit the header instead.
        var text = String(decoding: encoded, as: UTF8.self)
        text = text.replacingOccurrences(of: "\"hash.x\"", with: "\"hash.y\"")
        XCTAssertThrowsError(try SafeTensors.decode(Data(text.utf8), path: "f")) { error in
            XCTAssertTrue("\(error)".contains("'y'"), "\(error)")
        }
    }

    func testFilesWithoutHashesStillLoad() throws {
        // What PyTorch writes: no hash metadata at all.
        let header = #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        var bytes = Data()
        var length = UInt64(header.utf8.count).littleEndian
        withUnsafeBytes(of: &length) { bytes.append(contentsOf: $0) }
        bytes.append(Data(header.utf8))
        for v: Float in [1.5, -2] { var b = v.bitPattern.littleEndian; withUnsafeBytes(of: &b) { bytes.append(contentsOf: $0) } }
        let file = try SafeTensors.decode(bytes, path: "torch.safetensors")
        XCTAssertEqual(file.tensors["w"]?.data, [1.5, -2])
        XCTAssertTrue(file.verifiedTensors.isEmpty)
    }

    /// A write killed with kill -9 leaves `.<name>.tmp-<pid>-<n>`; the next write removes it.
    func testStaleTemporaryOfADeadWriterIsRemovedByTheNextWrite() throws {
        let target = (dir as NSString).appendingPathComponent("checkpoint.safetensors")
        // A pid that cannot be alive: above the kernel's pid_max (4194304 at most on Linux).
        let stale = (dir as NSString).appendingPathComponent(".checkpoint.safetensors.tmp-99999999-12345")
        let live = (dir as NSString).appendingPathComponent(".checkpoint.safetensors.tmp-\(getpid())-1")
        XCTAssertTrue(FileManager.default.createFile(atPath: stale, contents: Data("half".utf8)))
        XCTAssertTrue(FileManager.default.createFile(atPath: live, contents: Data("mine".utf8)))
        try sample().write(path: target)
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale), "stale temporary of a dead process left behind")
        XCTAssertTrue(FileManager.default.fileExists(atPath: live), "a live writer's temporary must stay")
        XCTAssertEqual(try SafeTensors.read(path: target).tensors["a.weight"]?.data, [1, 2, 3, 4, 5, 6])
    }

    // MARK: - The comparison rule

    func testNonFiniteOnEitherSideFails() {
        XCTAssertTrue(Closeness.compare([1, 2, 3], [1, 2, 3.0000001], atol: 1e-6, rtol: 0).passed)
        XCTAssertFalse(Closeness.compare([1, 2, 3], [1, .nan, 3], atol: 1e-6, rtol: 0).passed, "NaN in the reference must fail")
        XCTAssertFalse(Closeness.compare([1, 2, 3], [1, .infinity, 3], atol: 1e-6, rtol: 1).passed, "Inf in the reference must fail")
        XCTAssertFalse(Closeness.compare([1, .nan, 3], [1, 2, 3], atol: 1e-6, rtol: 0).passed)
        XCTAssertFalse(Closeness.compare([1, .nan], [1, .nan], atol: 1, rtol: 1).passed, "NaN = NaN only when the caller expects it")
        XCTAssertTrue(Closeness.compare([1, .nan, -.infinity], [1, .nan, -.infinity], atol: 0, rtol: 0, matchingNonFinite: true).passed)
        XCTAssertFalse(Closeness.compare([.infinity], [-.infinity], atol: 0, rtol: 0, matchingNonFinite: true).passed)
        XCTAssertFalse(Closeness.compare([.nan], [1], atol: 0, rtol: 0, matchingNonFinite: true).passed)
        let c = Closeness.compare([1, 2, 3, 4], [1, .nan, 3, .infinity], atol: 1e-3, rtol: 0)
        XCTAssertEqual(c.failures, 2)
        XCTAssertEqual(c.nonFinite, 2)
        XCTAssertEqual(c.maxAbs, .infinity, "a non-finite element must not drop out of the max")
        XCTAssertEqual(c.firstFailures.map(\.index), [1, 3])
    }

    func testInvalidTolerancesPassNothingAndLengthsMustMatch() {
        XCTAssertFalse(Closeness.compare([1], [2], atol: .infinity, rtol: 0).passed, "an infinite tolerance passes nothing")
        XCTAssertFalse(Closeness.compare([1], [1.5], atol: .nan, rtol: 0).passed)
        XCTAssertFalse(Closeness.compare([1], [1], atol: -1, rtol: 0).passed, "a negative tolerance passes nothing")
        XCTAssertFalse(Closeness.compare([1, 2], [1], atol: 1, rtol: 1).passed)
        let ok = Closeness.compare([1.001, 2], [1, 2], atol: 0, rtol: 2e-3)
        XCTAssertTrue(ok.passed)
        XCTAssertEqual(ok.worstIndex, 0)
        XCTAssertEqual(ok.worstRatio, 0.001 / 0.002, accuracy: 1e-3)
    }
}
