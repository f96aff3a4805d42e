import Foundation
import SGEEngine
import SGENet
import SGETensor
import SGEDeviceTestSupport
import XCTest

/// PyTorch weights in: the fixtures under Tests/Fixtures/weights were written by
/// `scripts/torch-weights.py fixture` from a PyTorch SGE-ResNet (scripts/sge_resnet.py) with random,
/// non-trivial weights, BatchNorm running statistics and SGE gates:
///   resnet50: --width 4 --groups 4 --classes 10 --image-size 64 (bottlenecks, stride on the 3×3)
///   resnet18: --width 4 --groups 4 --classes 7 --image-size 61 (basic blocks; layer1 has G = C = 4;
///             an odd input size)
/// Each `.io` file holds the input, PyTorch's float64 logits and its float32 logits.
///
/// Tolerance: sge's logits must be within 10× float32's own error of the float64 logits, where
/// float32's own error is max |logits_f32 − logits_f64| over the batch (PyTorch's float32 rounding
/// of the same network: 1.6e-5 for the resnet50 fixture, 7.4e-7 for resnet18). sge rounds in a
/// different order (CLBlast GEMM, its own reductions), so its error is of the same size, not
/// identical; 10× leaves room for that while a misplaced tensor, a wrong BatchNorm epsilon or a
/// wrong SGE formula moves logits by orders of magnitude more. (logits_f64 is read as Float,
/// which adds at most 6e-8 relative.)
final class WeightsTests: XCTestCase {
    static let fixtures: [(model: String, name: String)] = [("resnet50", "sge_resnet50_w4_g4"), ("resnet18", "sge_resnet18_w4_g4")]

    func path(_ name: String) -> String { fixturesDirectory().appendingPathComponent("weights/\(name)").path }

    func checkLogits(backend: any Backend) throws {
        for (model, name) in Self.fixtures {
            let weights = try Weights(path: path(name + ".safetensors"), model: model)
            XCTAssertFalse(weights.isCheckpoint)
            XCTAssertTrue(weights.file.tensors.keys.contains { $0.hasSuffix("num_batches_tracked") }, "fixture lacks the int64 counters")
            let io = try SafeTensors.read(path: path(name + ".io.safetensors"))
            let net = try weights.model(on: backend)
            let logits = try Inference.logits(model: net, backend: backend, input: try io.tensor("input"), batchSize: 64)
            let f64 = try io.tensor("logits_f64"), f32 = try io.tensor("logits_f32")
            XCTAssertEqual(logits.shape, f64.shape)
            let own = zip(f32.data, f64.data).map { abs(Double($0) - Double($1)) }.max()!
            let err = zip(logits.data, f64.data).map { abs(Double($0) - Double($1)) }.max()!
            XCTAssertLessThanOrEqual(err, 10 * own, "\(model) on \(backend.name): max |sge − float64| \(err), float32's own error \(own)")
        }
    }

    func testPyTorchLogitsOnReference() throws { try checkLogits(backend: ReferenceBackend()) }

    func testPyTorchLogitsOnDevice() throws { try checkLogits(backend: try testDevice()) }

    /// The layout read from the state_dict's shapes: widths, groups, classes and the ImageNet stem.
    func testConfigReadFromStateDict() throws {
        let w = try Weights(path: path("sge_resnet50_w4_g4.safetensors"), model: "resnet50")
        XCTAssertEqual(w.config.widths, [4, 8, 16, 32])
        XCTAssertEqual(w.config.groups, [4, 4, 4, 4])
        XCTAssertEqual(w.config.blocks, [3, 4, 6, 3])
        XCTAssertEqual(w.config.block, .bottleneck)
        XCTAssertEqual(w.config.stem, .imagenet)
        XCTAssertEqual(w.config.classes, 10)
        XCTAssertThrowsError(try Weights(path: path("sge_resnet50_w4_g4.safetensors"), model: nil)) {
            XCTAssertTrue("\($0)".contains("--model"), "\($0)")
        }
    }

    /// Missing, unexpected and wrongly shaped keys are all named in one error, with both shapes.
    func testMismatchedStateDictNamesEveryKey() throws {
        var file = try SafeTensors.read(path: path("sge_resnet18_w4_g4.safetensors"))
        file.tensors["layer2.0.bn1.running_var"] = nil
        file.tensors["layer9.0.conv1.weight"] = HostTensor(zeros: [2, 2])
        file.tensors["layer3.1.conv2.weight"] = HostTensor(zeros: [16, 16, 1, 1])
        let bad = NSTemporaryDirectory() + "sge-weights-\(UUID().uuidString).safetensors"
        defer { try? FileManager.default.removeItem(atPath: bad) }
        try file.write(path: bad)
        XCTAssertThrowsError(try Weights(path: bad, model: "resnet18").model(on: ReferenceBackend())) { error in
            let text = "\(error)"
            for needle in ["'layer2.0.bn1.running_var'", "'layer9.0.conv1.weight' [2, 2]", "'layer3.1.conv2.weight' has shape [16, 16, 1, 1]",
                           "expects [16, 16, 3, 3]"] {
                XCTAssertTrue(text.contains(needle), "\(needle) not in: \(text)")
            }
        }
    }

    /// A state_dict of one depth given as another preset is refused by its keys.
    func testWrongPresetIsRefused() throws {
        XCTAssertThrowsError(try Weights(path: path("sge_resnet18_w4_g4.safetensors"), model: "resnet34").model(on: ReferenceBackend())) {
            XCTAssertTrue("\($0)".contains("missing tensor"), "\($0)")
        }
    }

    /// The paper's SGE-ResNet-50 at full width has torchvision's resnet50 parameter count
    /// (25,557,032 with 1000 classes) plus SGE's 2·64 per block (16 blocks). (The small fixtures
    /// above check every other preset's keys and shapes against PyTorch.)
    func testResNet50ParameterCount() throws {
        for (name, torchvision, blocks) in [("resnet50", 25_557_032, 16)] {
            let config = try ResNetConfig.preset(name, channels: 3, height: 224, classes: 1000)
            let model = try SGEResNet(ReferenceBackend(), config: config, seed: 1)
            let count = model.namedParameters.reduce(0) { $0 + $1.1.value.count }
            XCTAssertEqual(count, torchvision + blocks * 2 * 64, name)
        }
    }

    /// `sge import` writes a checkpoint that `sge infer` runs without --model and that gives the
    /// same logits as the state_dict.
    func testImportAndInferCommands() throws {
        let dir = NSTemporaryDirectory() + "sge-import-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let name = "sge_resnet18_w4_g4"
        let ckpt = dir + "/ckpt.safetensors"
        var r = try CLI.run(["import", "--model", "resnet18", path(name + ".safetensors"), "--out", ckpt])
        XCTAssertEqual(r.status, 0, r.output)
        r = try CLI.run(["infer", "--model", "resnet18", "--weights", path(name + ".safetensors"), "--input", path(name + ".io.safetensors"),
                         "--out", dir + "/a.safetensors", "--device", "reference"])
        XCTAssertEqual(r.status, 0, r.output)
        r = try CLI.run(["infer", "--weights", ckpt, "--input", path(name + ".io.safetensors"), "--out", dir + "/b.safetensors",
                         "--device", "reference"])
        XCTAssertEqual(r.status, 0, r.output)
        let a = try SafeTensors.read(path: dir + "/a.safetensors").tensor("logits")
        let b = try SafeTensors.read(path: dir + "/b.safetensors").tensor("logits")
        XCTAssertEqual(a, b, "the imported checkpoint must hold exactly the state_dict's values")
        r = try CLI.run(["import", "--model", "resnet18", path(name + ".safetensors"), "--out", ckpt])
        XCTAssertEqual(r.status, 2, "an existing --out needs --overwrite: \(r.output)")
        r = try CLI.run(["infer", "--weights", ckpt, "--input", path(name + ".safetensors"), "--out", dir + "/c.safetensors"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.output.contains("no tensor named 'input'"), r.output)
    }

    /// `sge train --weights` starts from a checkpoint's weights (not its position), and
    /// `sge eval --weights` gives what `sge eval CKPT` gives.
    func testTrainAndEvalTakeWeights() throws {
        let dir = NSTemporaryDirectory() + "sge-weights-train-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try CLI.writeDataset(dir: dir + "/data", train: 128, test: 64, size: 28)
        let common = ["--data", dir + "/data", "--batch-size", "64", "--epochs", "1", "--steps-per-epoch", "2"]
        var r = try CLI.run(["train"] + common + ["--out", dir + "/a"])
        XCTAssertEqual(r.status, 0, r.output)
        let ckpt = dir + "/a/checkpoint.safetensors"
        r = try CLI.run(["train"] + common + ["--out", dir + "/b", "--weights", ckpt])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("starting from the weights in \(ckpt)"), r.output)
        r = try CLI.run(["train"] + common + ["--out", dir + "/c", "--weights", ckpt, "--resume", ckpt])
        XCTAssertEqual(r.status, 2, r.output)
        let a = try CLI.run(["eval", ckpt, "--json", "--data", dir + "/data"])
        let b = try CLI.run(["eval", "--weights", ckpt, "--json", "--data", dir + "/data"])
        XCTAssertEqual(a.status, 0, a.output)
        XCTAssertEqual(a.stdout, b.stdout)
    }
}
