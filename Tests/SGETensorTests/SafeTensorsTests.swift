import Foundation
import SGETensor
import SGETestSupport
import XCTest

final class SafeTensorsTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("sge-st-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    func testRoundTripKeepsValuesShapesAndMetadata() throws {
        var rng = SeededRNG(seed: 1)
        let file = SafeTensors(
            tensors: ["a.weight": HostTensor(shape: [2, 3, 4, 5], data: rng.normals(120)),
                      "b": HostTensor(shape: [7], data: rng.normals(7)),
                      "scalar": HostTensor(shape: [], data: [3.5])],
            metadata: ["epoch": "3", "config": "{\"x\":1}"])
        try file.write(path: path("t.safetensors"))
        let back = try SafeTensors.read(path: path("t.safetensors"))
        XCTAssertEqual(back.metadata, file.metadata)
        XCTAssertEqual(back.tensors, file.tensors)
        // Header is padded to a multiple of 8 so the data section is aligned.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path("t.safetensors")))
        let headerLength = bytes.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        XCTAssertEqual(headerLength % 8, 0)
    }

    func testReadsTheGoldenFiles() throws {
        let golden = try SafeTensors.read(path: fixturesDirectory().appendingPathComponent("golden/tiny_init.safetensors").path)
        XCTAssertEqual(golden.tensors["x"]?.shape, [2, 8, 5, 7])
        XCTAssertEqual(golden.metadata["groups"], "2")
    }

    func assertCorrupt(_ bytes: Data, contains fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        let p = path("bad.safetensors")
        FileManager.default.createFile(atPath: p, contents: bytes)
        XCTAssertThrowsError(try SafeTensors.read(path: p), file: file, line: line) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains(p), "message should name the file: \(message)", file: file, line: line)
            XCTAssertTrue(message.contains(fragment), "message should say '\(fragment)': \(message)", file: file, line: line)
        }
    }

    func validBytes() throws -> Data {
        try SafeTensors(tensors: ["w": HostTensor(shape: [4, 4], data: (0..<16).map(Float.init))], metadata: ["k": "v"]).encode()
    }

    func testTruncatedFilesAreRejectedWithTheReason() throws {
        let good = try validBytes()
        assertCorrupt(good.prefix(5), contains: "shorter than the 8-byte header length")
        assertCorrupt(good.prefix(20), contains: "runs past the end of the file")
        assertCorrupt(good.prefix(good.count - 4), contains: "truncated")
    }

    func testCorruptHeadersAreRejected() throws {
        var good = try validBytes()
        // Break the JSON.
        var bad = good
        bad[8] = UInt8(ascii: "[")
        bad[9] = UInt8(ascii: "x")
        assertCorrupt(bad, contains: "not valid JSON")
        // An absurd header length.
        good.replaceSubrange(0..<8, with: [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0])
        assertCorrupt(good, contains: "exceeds")
        // Offsets that do not match the shape.
        func header(_ json: String) -> Data {
            var d = Data()
            var n = UInt64(json.utf8.count).littleEndian
            withUnsafeBytes(of: &n) { d.append(contentsOf: $0) }
            d.append(Data(json.utf8))
            d.append(Data(count: 64))
            return d
        }
        assertCorrupt(header(#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}}"#), contains: "needs 16 bytes")
        assertCorrupt(header(#"{"w":{"dtype":"I8","shape":[4],"data_offsets":[0,4]}}"#), contains: "dtype I8")
        assertCorrupt(header(#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#), contains: "overlap")
        assertCorrupt(header(#"{"w":{"dtype":"F32","shape":[4]}}"#), contains: "lacks")
    }

    func testMissingFileGivesIOError() {
        XCTAssertThrowsError(try SafeTensors.read(path: path("nope.safetensors"))) { error in
            guard case SGEError.io(let p, _) = error else { return XCTFail("expected io error, got \(error)") }
            XCTAssertEqual(p, self.path("nope.safetensors"))
        }
    }

    func testAtomicWriteReplacesAndLeavesNoTemporaryFiles() throws {
        let p = path("ckpt.safetensors")
        try SafeTensors(tensors: ["a": HostTensor(shape: [1], data: [1])]).write(path: p)
        try SafeTensors(tensors: ["a": HostTensor(shape: [1], data: [2])]).write(path: p)
        XCTAssertEqual(try SafeTensors.read(path: p).tensors["a"]?.data, [2])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["ckpt.safetensors"])
    }

    func testRNGIsDeterministicAndRestorable() {
        var a = SeededRNG(seed: 42)
        _ = a.normals(10)
        var b = SeededRNG(state: a.stateWords)
        XCTAssertEqual(a.uniforms(5), b.uniforms(5))
        var c = SeededRNG(seed: 43)
        XCTAssertNotEqual(SeededRNG(seed: 42).stateWords, c.stateWords)
        let u = (0..<1000).map { _ in c.uniform() }
        XCTAssertTrue(u.allSatisfy { $0 >= 0 && $0 < 1 })
    }
}

/// PyTorch state_dicts hold int64 counters and may be saved in half precision: F16, BF16, I64 and
/// I32 are read exactly (every value here is representable in Float).
final class SafeTensorsDTypeTests: XCTestCase {
    func testReadsHalfBFloatAndIntegers() throws {
        func file(_ dtype: String, _ bytes: [UInt8], count: Int) -> Data {
            let header = #"{"t":{"dtype":"\#(dtype)","shape":[\#(count)],"data_offsets":[0,\#(bytes.count)]}}"#
            var data = Data()
            var n = UInt64(header.utf8.count).littleEndian
            withUnsafeBytes(of: &n) { data.append(contentsOf: $0) }
            data.append(contentsOf: Array(header.utf8))
            data.append(contentsOf: bytes)
            return data
        }
        // F16: 1.0 = 0x3C00, -2.5 = 0xC100, 2^-24 (smallest subnormal) = 0x0001, 65504 = 0x7BFF.
        let f16 = try SafeTensors.decode(file("F16", [0x00, 0x3C, 0x00, 0xC1, 0x01, 0x00, 0xFF, 0x7B], count: 4), path: "f16")
        XCTAssertEqual(f16.tensors["t"]!.data, [1, -2.5, 0x1p-24, 65504])
        // BF16: the top 16 bits of a float: 1.0 = 0x3F80, -3.0 = 0xC040.
        let bf16 = try SafeTensors.decode(file("BF16", [0x80, 0x3F, 0x40, 0xC0], count: 2), path: "bf16")
        XCTAssertEqual(bf16.tensors["t"]!.data, [1, -3])
        let i64 = try SafeTensors.decode(file("I64", [0xE8, 0x03, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], count: 2), path: "i64")
        XCTAssertEqual(i64.tensors["t"]!.data, [1000, -1])
        let i32 = try SafeTensors.decode(file("I32", [0x07, 0, 0, 0, 0xFE, 0xFF, 0xFF, 0xFF], count: 2), path: "i32")
        XCTAssertEqual(i32.tensors["t"]!.data, [7, -2])
    }
}
