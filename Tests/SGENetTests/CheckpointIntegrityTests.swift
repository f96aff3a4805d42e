import Foundation
import SGEEngine
import SGENet
import SGETensor
import SGEDeviceTestSupport
import XCTest

/// Findings 1 and 5 at the API level: damaged checkpoints and resuming another run's checkpoint.
final class CheckpointIntegrityTests: XCTestCase {
    var dir: String!
    let backend = ReferenceBackend()

    override func setUpWithError() throws {
        dir = (NSTemporaryDirectory() as NSString).appendingPathComponent("sge-ckpt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    func options(batch: Int = 4) -> TrainOptions {
        var o = TrainOptions()
        o.batchSize = batch
        o.epochs = 2
        o.lr = 0.05
        return o
    }

    /// A checkpoint of `config` after one step; returns its path.
    func checkpoint(config: ResNetConfig = tinyConfig(), options: TrainOptions? = nil, name: String = "ckpt.safetensors") throws -> String {
        let data = try tinyDataset(count: 8, seed: 1)
        let t = try Trainer(backend: backend, model: try SGEResNet(backend, config: config, seed: 3), train: data, test: nil,
                            options: options ?? self.options())
        t.checkpointPath = (dir as NSString).appendingPathComponent(name)
        try t.runSteps(1)
        try t.saveCheckpointNow()
        return t.checkpointPath!
    }

    func load(_ path: String) throws {
        let model = try SGEResNet(backend, config: tinyConfig(), seed: 0)
        try Checkpoint.load(into: model, from: try SafeTensors.read(path: path), path: path)
    }

    func assertRejected(_ path: String, naming tensor: String, line: UInt = #line) {
        XCTAssertThrowsError(try load(path), line: line) { error in
            XCTAssertTrue("\(error)".contains("'\(tensor)'"), "error must name \(tensor): \(error)", line: line)
        }
    }

    /// Overwrites the data of tensor `name` in the file at `path` with `values`, header untouched.
    func overwrite(_ path: String, _ name: String, with values: (Int) -> Float) throws {
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let headerLength = Int(bytes.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        let header = try JSONSerialization.jsonObject(with: bytes[8..<(8 + headerLength)]) as! [String: Any]
        let offsets = (header[name] as! [String: Any])["data_offsets"] as! [Int]
        for i in 0..<((offsets[1] - offsets[0]) / 4) {
            let bits = values(i).bitPattern
            for b in 0..<4 { bytes[8 + headerLength + offsets[0] + 4 * i + b] = UInt8(bits >> (8 * UInt32(b)) & 0xFF) }
        }
        try bytes.write(to: URL(fileURLWithPath: path))
    }

    func testIntactCheckpointLoads() throws {
        let path = try checkpoint()
        XCTAssertNoThrow(try load(path))
        XCTAssertFalse(try SafeTensors.read(path: path).verifiedTensors.isEmpty, "sge checkpoints carry hashes")
    }

    /// Finding 1: the bytes of one tensor overwritten, header valid.
    func testOverwrittenTensorIsRejectedByItsHash() throws {
        let path = try checkpoint()
        try overwrite(path, "layer2.0.conv2.weight") { Float($0 % 7) * 1e3 }
        assertRejected(path, naming: "layer2.0.conv2.weight")
    }

    /// Finding 1: a NaN in a BatchNorm running variance (file without hashes, as PyTorch writes it).
    func testNaNInRunningVarIsRejectedEvenWithoutHashes() throws {
        let path = try checkpoint()
        var file = try SafeTensors.read(path: path)
        file.tensors["bn1.running_var"]!.data[1] = .nan
        file.tensors["layer1.0.bn2.weight"]!.data[0] = -.infinity
        try stripHashes(file, to: path)
        XCTAssertTrue(try SafeTensors.read(path: path).verifiedTensors.isEmpty)
        assertRejected(path, naming: "bn1.running_var")
    }

    func testInfInAParameterIsRejected() throws {
        let path = try checkpoint()
        var file = try SafeTensors.read(path: path)
        file.tensors["fc.weight"]!.data[5] = .infinity
        try file.write(path: path)  // re-hashed: the hash is right, the value is not
        assertRejected(path, naming: "fc.weight")
    }

    func testTensorTheModelDoesNotHaveIsRejectedButNumBatchesTrackedIsIgnored() throws {
        let path = try checkpoint()
        var file = try SafeTensors.read(path: path)
        file.tensors["bn1.num_batches_tracked"] = HostTensor(shape: [], data: [12])
        try file.write(path: path)
        XCTAssertNoThrow(try load(path), "PyTorch's num_batches_tracked entries are ignored")
        file.tensors["layer3.0.conv1.weight"] = HostTensor(shape: [2], data: [1, 2])
        try file.write(path: path)
        assertRejected(path, naming: "layer3.0.conv1.weight")
    }

    /// A plain PyTorch-style file (no hashes, no sge metadata) with finite values still loads.
    func testPlainSafetensorsWithoutHashesLoad() throws {
        let path = try checkpoint()
        try stripHashes(try SafeTensors.read(path: path), to: path)
        XCTAssertNoThrow(try load(path))
    }

    /// An sge checkpoint whose hash entries were removed is refused as a whole.
    func testCurrentFormatWithoutHashesIsRefused() throws {
        let path = try checkpoint()
        try stripHashes(try SafeTensors.read(path: path), to: path, keepFormat: true)
        XCTAssertThrowsError(try load(path)) { error in
            XCTAssertTrue("\(error)".contains("must carry a hash"), "\(error)")
        }
    }

    /// Writes `file` with its hash entries (and, unless `keepFormat`, the sge format tag) removed
    /// from the header: what a non-sge writer, or an older sge, produces.
    func stripHashes(_ file: SafeTensors, to path: String, keepFormat: Bool = false) throws {
        let encoded = try file.encode()
        let headerLength = Int(encoded.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        var header = try JSONSerialization.jsonObject(with: encoded[8..<(8 + headerLength)]) as! [String: Any]
        header["__metadata__"] = (header["__metadata__"] as! [String: String])
            .filter { !$0.key.hasPrefix(SafeTensors.hashPrefix) && (keepFormat || $0.key != "format") }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        var out = Data()
        var length = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &length) { out.append(contentsOf: $0) }
        out.append(json)
        out.append(encoded[(8 + headerLength)...])
        try out.write(to: URL(fileURLWithPath: path))
    }

    // MARK: - Finding 5: resume checks

    /// A checkpoint of a deeper model resumed into the tiny one: refused, naming the difference.
    func testResumeRefusesAnotherModelsCheckpoint() throws {
        var deeper = tinyConfig()
        deeper.blocks = [2, 1]
        let path = try checkpoint(config: deeper)
        let t = try Trainer(backend: backend, model: try SGEResNet(backend, config: tinyConfig(), seed: 3),
                            train: try tinyDataset(count: 8, seed: 1), test: nil, options: options())
        XCTAssertThrowsError(try t.resume(from: path)) { error in
            XCTAssertTrue("\(error)".contains("blocks per stage") && "\(error)".contains("[2, 1] vs [1, 1]"), "\(error)")
        }
        XCTAssertEqual(t.step, 0)
    }

    func testResumeRefusesOtherOptionsNamingEachDifference() throws {
        let path = try checkpoint()
        var other = options(batch: 2)
        other.lr = 0.1
        let t = try Trainer(backend: backend, model: try SGEResNet(backend, config: tinyConfig(), seed: 3),
                            train: try tinyDataset(count: 8, seed: 1), test: nil, options: other)
        XCTAssertThrowsError(try t.resume(from: path)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("--batch-size 4 vs 2") && text.contains("--lr 0.05 vs 0.1"), text)
        }
        // Another dataset (here: another number of training images) is refused too.
        let fewer = try Trainer(backend: backend, model: try SGEResNet(backend, config: tinyConfig(), seed: 3),
                                train: try tinyDataset(count: 12, seed: 1), test: nil, options: options())
        XCTAssertThrowsError(try fewer.resume(from: path)) { error in
            XCTAssertTrue("\(error)".contains("training images"), "\(error)")
        }
        // Same run, more epochs: accepted.
        var longer = options()
        longer.epochs = 3
        let ok = try Trainer(backend: backend, model: try SGEResNet(backend, config: tinyConfig(), seed: 3),
                             train: try tinyDataset(count: 8, seed: 1), test: nil, options: longer)
        XCTAssertNoThrow(try ok.resume(from: path))
        XCTAssertEqual(ok.step, 1)
    }

    /// The NaN message names only a checkpoint this run wrote or resumed from.
    func testNaNMessageDoesNotClaimAnUnrelatedCheckpoint() throws {
        let unrelated = (dir as NSString).appendingPathComponent("other.safetensors")
        try Data("someone else's file".utf8).write(to: URL(fileURLWithPath: unrelated))
        var o = options()
        o.lr = 1e30
        o.warmupEpochs = 0
        let t = try Trainer(backend: backend, model: try SGEResNet(backend, config: tinyConfig(), seed: 2),
                            train: try tinyDataset(count: 8, seed: 6), test: nil, options: o)
        t.checkpointPath = unrelated
        XCTAssertThrowsError(try t.run()) { error in
            let text = "\(error)"
            XCTAssertFalse(text.contains("last good checkpoint"), text)
            XCTAssertTrue(text.contains("no checkpoint yet"), text)
        }
    }
}
