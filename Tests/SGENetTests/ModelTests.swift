import Foundation
import SGEEngine
import SGENet
import SGETensor
import SGEDeviceTestSupport
import XCTest

/// A tiny SGE-ResNet and data set small enough for the reference backend in a debug build.
func tinyConfig() -> ResNetConfig {
    ResNetConfig(inputChannels: 1, classes: 3, stem: .small, stemWidth: 4, widths: [4, 8], blocks: [1, 1], groups: [2, 4])
}

/// Structured synthetic data: class k is a bright blob in a class-specific quadrant plus noise.
func tinyDataset(count: Int, seed: UInt64) throws -> Dataset {
    var rng = SeededRNG(seed: seed)
    var images: [Float] = []
    var labels: [Int32] = []
    for i in 0..<count {
        let k = i % 3
        labels.append(Int32(k))
        for y in 0..<8 {
            for x in 0..<8 {
                let inBlob = (k == 0 && x < 4 && y < 4) || (k == 1 && x >= 4 && y < 4) || (k == 2 && y >= 4)
                images.append((inBlob ? 1.5 : -0.5) + 0.3 * rng.normal())
            }
        }
    }
    return try Dataset(images: images, labels: labels, channels: 1, height: 8, width: 8, classNames: ["a", "b", "c"],
                       mean: [0], std: [1], source: "synthetic")
}

final class ModelTests: XCTestCase {
    func testParameterNamesFollowPyTorchStateDict() throws {
        let model = try SGEResNet(ReferenceBackend(), config: tinyConfig(), seed: 1)
        let names = model.namedParameters.map(\.0)
        for expected in ["conv1.weight", "bn1.weight", "bn1.bias", "layer1.0.conv1.weight", "layer1.0.bn1.weight",
                         "layer1.0.conv2.weight", "layer1.0.bn2.bias", "layer1.0.sge.weight", "layer1.0.sge.bias",
                         "layer2.0.downsample.0.weight", "layer2.0.downsample.1.weight", "fc.weight", "fc.bias"] {
            XCTAssertTrue(names.contains(expected), "missing \(expected) in \(names)")
        }
        let buffers = model.namedBuffers.map(\.0)
        XCTAssertTrue(buffers.contains("layer1.0.bn1.running_mean"))
        XCTAssertTrue(buffers.contains("layer2.0.downsample.1.running_var"))
        // SGE parameters start at weight 0, bias 1; BN at 1 and 0.
        let params = Dictionary(uniqueKeysWithValues: model.namedParameters)
        XCTAssertEqual(try params["layer2.0.sge.weight"]!.value.read(), [0, 0, 0, 0])
        XCTAssertEqual(try params["layer2.0.sge.bias"]!.value.read(), [1, 1, 1, 1])
        XCTAssertEqual(try params["bn1.weight"]!.value.read(), [1, 1, 1, 1])
        // --no-sge removes the SGE layers.
        var plain = tinyConfig()
        plain.useSGE = false
        XCTAssertFalse(try SGEResNet(ReferenceBackend(), config: plain, seed: 1).namedParameters.contains { $0.0.contains("sge") })
    }

    /// Bottleneck blocks (1×1, 3×3, 1×1 ×4 expansion) with SGE after bn3: names, and a training step
    /// whose device result matches the reference (same tolerance reasoning as the 3-step test).
    func testBottleneckBlocks() throws {
        var config = tinyConfig()
        config.block = .bottleneck
        config.groups = [4, 8]
        let data = try tinyDataset(count: 4, seed: 8)
        var options = TrainOptions()
        options.batchSize = 4
        options.warmupEpochs = 0
        options.schedule = .constant
        var losses: [[Float]] = []
        for backend in [try testDevice() as any Backend, ReferenceBackend()] {
            let model = try SGEResNet(backend, config: config, seed: 3)
            let names = model.namedParameters.map(\.0)
            XCTAssertTrue(names.contains("layer1.0.conv3.weight") && names.contains("layer1.0.bn3.weight"))
            XCTAssertTrue(names.contains("layer1.0.sge.weight") && names.contains("layer1.0.downsample.0.weight"))
            let params = Dictionary(uniqueKeysWithValues: model.namedParameters)
            XCTAssertEqual(params["layer1.0.conv3.weight"]?.value.shape, [16, 4, 1, 1], "expansion 4")
            XCTAssertEqual(params["fc.weight"]?.value.shape, [3, 32])
            let trainer = try Trainer(backend: backend, model: model, train: data, test: nil, options: options)
            try trainer.runSteps(2)
            losses.append(trainer.stepLosses)
        }
        assertClose(losses[0], losses[1], atol: 1e-4, rtol: 1e-4, "bottleneck losses device vs reference")
    }

    func testBadConfigurationsAreTypedErrors() {
        var c = tinyConfig()
        c.groups = [3, 4]
        XCTAssertThrowsError(try SGEResNet(ReferenceBackend(), config: c, seed: 1)) { error in
            XCTAssertTrue("\(error)".contains("not divisible by 3 SGE groups"), "\(error)")
        }
        c = tinyConfig()
        c.blocks = [1]
        XCTAssertThrowsError(try SGEResNet(ReferenceBackend(), config: c, seed: 1))
        let model = try! SGEResNet(ReferenceBackend(), config: tinyConfig(), seed: 1)
        let x = try! ReferenceBackend().tensor([Float](repeating: 0, count: 2 * 3 * 8 * 8), [2, 3, 8, 8])
        XCTAssertThrowsError(try model.forward(x, training: true)) { error in
            XCTAssertTrue("\(error)".contains("input must be [N, 1, H, W], got [2, 3, 8, 8]"), "\(error)")
        }
    }

    /// Three SGD steps from the same seed on the device and on the reference backend. Tolerance:
    /// float32 kernels (CLBlast GEMMs with a different summation order, BN/SGE reductions) vs Double
    /// accumulation drift by ~1e-6 relative per op; after 3 steps through ~20 layers the losses agree
    /// to 1e-4 and parameters to 1e-3 absolute + relative (a wrong gradient anywhere moves them by
    /// ≥ 1e-2 at lr 0.1).
    func testThreeStepsMatchBetweenDeviceAndReference() throws {
        let device = try testDevice()
        let data = try tinyDataset(count: 8, seed: 3)
        var options = TrainOptions()
        options.batchSize = 4
        options.epochs = 1
        options.stepsPerEpochLimit = 2
        options.warmupEpochs = 0
        options.schedule = .constant
        var results: [(losses: [Float], params: [String: [Float]])] = []
        for backend in [device as any Backend, ReferenceBackend()] {
            let model = try SGEResNet(backend, config: tinyConfig(), seed: 5)
            var opts2 = options
            opts2.epochs = 2
            let t2 = try Trainer(backend: backend, model: model, train: data, test: nil, options: opts2)
            try t2.runSteps(3)  // epoch 1 (2 steps) and the first step of epoch 2
            var params: [String: [Float]] = [:]
            for (name, p) in model.namedParameters { params[name] = try p.value.read() }
            for (name, t) in model.namedBuffers { params[name] = try t.read() }
            results.append((t2.stepLosses, params))
        }
        XCTAssertEqual(results[0].losses.count, 3)
        assertClose(results[0].losses, results[1].losses, atol: 1e-4, rtol: 1e-4, "losses device vs reference")
        for (name, ref) in results[1].params {
            assertClose(results[0].params[name]!, ref, atol: 1e-3, rtol: 1e-3, "parameter \(name) after 3 steps")
        }
    }

    func testCheckpointRoundTripAndResumeMatchesUninterruptedRun() throws {
        let backend = ReferenceBackend()
        let data = try tinyDataset(count: 12, seed: 4)
        var options = TrainOptions()
        options.batchSize = 4
        options.epochs = 2
        options.lr = 0.05
        // Uninterrupted: 2 epochs × 3 steps.
        let full = try Trainer(backend: backend, model: try SGEResNet(backend, config: tinyConfig(), seed: 9), train: data, test: nil, options: options)
        try full.run()
        XCTAssertEqual(full.stepLosses.count, 6)

        // Interrupted after 4 steps (mid-epoch), checkpointed, resumed in a fresh model.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sge-resume-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("ckpt.safetensors").path
        let first = try Trainer(backend: backend, model: try SGEResNet(backend, config: tinyConfig(), seed: 9), train: data, test: nil, options: options)
        first.checkpointPath = path
        try first.runSteps(4)
        try first.saveCheckpointNow()

        let file = try SafeTensors.read(path: path)
        XCTAssertEqual(file.tensors["layer1.0.sge.weight"]?.shape, [1, 2, 1, 1], "SGE parameters stored as PyTorch's [1, G, 1, 1]")
        XCTAssertNotNil(file.tensors["optimizer.momentum_buffer.fc.weight"])
        XCTAssertNotNil(file.tensors["layer1.0.bn1.running_var"])
        XCTAssertEqual(file.metadata["step"], "4")
        XCTAssertEqual(try Checkpoint.config(of: file, path: path), tinyConfig())

        let resumed = try Trainer(backend: backend, model: try SGEResNet(backend, config: tinyConfig(), seed: 123), train: data, test: nil, options: options)
        try resumed.resume(from: path)
        XCTAssertEqual(resumed.step, 4)
        try resumed.run()
        XCTAssertEqual(resumed.stepLosses.count, 2)
        // Deterministic reference backend: the resumed steps repeat the uninterrupted ones exactly.
        XCTAssertEqual(Array(first.stepLosses) + resumed.stepLosses, full.stepLosses)
        // A different seed refuses to resume silently.
        var other = options
        other.seed = 2
        let wrong = try Trainer(backend: backend, model: try SGEResNet(backend, config: tinyConfig(), seed: 1), train: data, test: nil, options: other)
        XCTAssertThrowsError(try wrong.resume(from: path))
    }

    func testOverfitsATinyBatch() throws {
        let backend = try testDevice()
        let data = try tinyDataset(count: 12, seed: 5)
        var options = TrainOptions()
        options.batchSize = 12
        options.epochs = 40
        options.lr = 0.05
        options.warmupEpochs = 0
        options.schedule = .constant
        let trainer = try Trainer(backend: backend, model: try SGEResNet(backend, config: tinyConfig(), seed: 2), train: data, test: nil, options: options)
        try trainer.run()
        let first = trainer.stepLosses.first!, last = trainer.stepLosses.last!
        XCTAssertLessThan(last, 0.2 * first, "loss \(first) → \(last) after 40 steps on one batch")
        let e = try trainer.evaluate(data)
        XCTAssertEqual(e.accuracy, 1, accuracy: 1e-9, "the tiny batch is memorised")
        XCTAssertEqual(e.confusion.map { $0.reduce(0, +) }, [4, 4, 4])
    }

    func testNaNLossStopsWithTheStep() throws {
        let backend = ReferenceBackend()
        let data = try tinyDataset(count: 8, seed: 6)
        var options = TrainOptions()
        options.batchSize = 4
        options.lr = 1e30
        options.warmupEpochs = 0
        let trainer = try Trainer(backend: backend, model: try SGEResNet(backend, config: tinyConfig(), seed: 2), train: data, test: nil, options: options)
        XCTAssertThrowsError(try trainer.run()) { error in
            XCTAssertTrue("\(error)".contains("at epoch 1, step"), "\(error)")
        }
    }

    func testLRSchedules() {
        let cosine = LRSchedule(kind: .cosine, baseLR: 0.1, warmupSteps: 10, totalSteps: 110, stepsPerEpoch: 10)
        XCTAssertEqual(cosine.lr(at: 0), 0.01, accuracy: 1e-7)
        XCTAssertEqual(cosine.lr(at: 9), 0.1, accuracy: 1e-7)
        XCTAssertEqual(cosine.lr(at: 60), 0.05, accuracy: 1e-6)
        XCTAssertEqual(cosine.lr(at: 110), 0, accuracy: 1e-7)
        let step = LRSchedule(kind: .step, baseLR: 0.1, warmupSteps: 0, totalSteps: 100, stepsPerEpoch: 10, milestones: [3, 6])
        XCTAssertEqual(step.lr(at: 29), 0.1, accuracy: 1e-7)
        XCTAssertEqual(step.lr(at: 30), 0.01, accuracy: 1e-7)
        XCTAssertEqual(step.lr(at: 65), 0.001, accuracy: 1e-8)
    }
}
