import Foundation
import SGEEngine
import SGENet
import SGEOpenCL
import SGETensor
import SGEDeviceTestSupport
import XCTest

/// The step memory plan (`StepMemory`) on the test device: training with it gives the same bits as
/// without it, steady-state steps create no device buffer and no host storage, other batch shapes
/// and evaluation in between still work, and a tensor held longer than recorded is not overwritten.
final class MemoryPlanTests: XCTestCase {
    struct Run {
        var losses: [Float] = []
        var params: [String: [Float]] = [:]
        var evaluation = 0.0
        /// Per step: cl_mem objects created and host storages allocated.
        var deviceAllocations: [Int] = []
        var hostAllocations: [Int] = []
        var stats = StepMemory.Stats()
        /// The held logits' device bytes after their step and after the next one (`holdLogits`).
        var held: (before: [Float], after: [Float])?
    }

    /// Six steps of batch 4, four of batch 3 (a smaller last batch), an evaluation pass, three more
    /// of batch 4. With `holdLogits`, step 5 keeps its logits until step 6 has run.
    func train(plan: Bool, holdLogits: Bool = false, arenaLimit: Int? = nil) throws -> Run {
        let backend = try testDevice()
        let memory = backend.stepMemory
        memory.reset()
        memory.arenaLimitBytes = arenaLimit
        let wasEnabled = memory.enabled
        memory.enabled = plan
        defer { memory.enabled = wasEnabled; memory.reset() }
        let data = try tinyDataset(count: 12, seed: 11)
        let model = try SGEResNet(backend, config: tinyConfig(), seed: 4)
        let sgd = try SGD(backend, parameters: model.namedParameters, momentum: 0.9, weightDecay: 5e-4)
        var run = Run()
        var inputs: [Int: (x: Tensor, y: Tensor)] = [:]
        var held: Tensor?
        let pixels = 64
        for (step, batch) in ([4, 4, 4, 4, 4, 4, 3, 3, 3, 3, 0, 4, 4, 4]).enumerated() {
            if batch == 0 {
                run.evaluation = try Trainer.evaluate(model: model, backend: backend, data: data, batchSize: 5).loss
                continue
            }
            let start = (step * 4) % (data.count - batch)
            let images = Array(data.images[(start * pixels)..<((start + batch) * pixels)])
            let labels = data.labels[start..<(start + batch)].map(Float.init)
            if inputs[batch] == nil { inputs[batch] = (backend.zeros([batch, 1, 8, 8]), backend.zeros([batch])) }
            let (x, y) = inputs[batch]!
            let (devices0, hosts0) = (backend.device.deviceAllocations, Tensor.hostStorageAllocations)
            backend.beginStep("tiny \(batch)")
            try x.write(images)
            try y.write(labels)
            // The step's tensors die inside the closure, before endStep, as in `trainStep`.
            let value: Float = try {
                let logits = try model.forward(x, training: true)
                let (loss, _, grad) = try backend.softmaxCrossEntropy(logits, labels: y)
                _ = try model.backward(grad)
                try sgd.step(lr: 0.05)
                var value: Float = 0
                try withUnsafeMutablePointer(to: &value) { try loss.read(into: UnsafeMutableBufferPointer(start: $0, count: 1)) }
                if holdLogits && step == 4 {
                    held = logits
                    run.held = (try deviceValues(logits, backend), [])
                }
                return value
            }()
            backend.endStep()
            if holdLogits && step == 5 { run.held!.after = try deviceValues(held!, backend) }
            run.losses.append(value)
            run.deviceAllocations.append(backend.device.deviceAllocations - devices0)
            run.hostAllocations.append(Tensor.hostStorageAllocations - hosts0)
        }
        for (name, p) in model.namedParameters { run.params[name] = try p.value.read() }
        for (name, t) in model.namedBuffers { run.params[name] = try t.read() }
        run.stats = memory.stats
        return run
    }

    /// The device copy of `t`, read without its host copy.
    func deviceValues(_ t: Tensor, _ backend: OpenCLBackend) throws -> [Float] {
        var out = [Float](repeating: 0, count: t.count)
        let buffer = try t.deviceBuffer()
        try out.withUnsafeMutableBytes { try backend.device.read(buffer, into: $0.baseAddress!, bytes: t.count * 4) }
        return out
    }

    func testPlannedStepsAreBitIdenticalAndAllocateNothing() throws {
        let off = try train(plan: false)
        let on = try train(plan: true)
        XCTAssertEqual(on.losses, off.losses, "losses with and without the memory plan")
        XCTAssertEqual(on.evaluation, off.evaluation, "evaluation between steps")
        XCTAssertEqual(Set(on.params.keys), Set(off.params.keys))
        for (name, values) in off.params { XCTAssertEqual(on.params[name]!, values, "\(name) with and without the plan") }
        // Batch 4: steps 1-3 record (the first also makes caches), 2 and 3 agree, steps 4-6 are
        // planned; batch 3 (steps 7-10; its first step makes caches of its own) gets its own plan
        // at the end of step 9; after the evaluation the batch-4 plan serves steps 11-13. Making a
        // plan releases the pool's kept buffers, so the evaluation's first step after one
        // re-creates the few buffers kept outside the plan (the loss, the correct count).
        XCTAssertEqual(on.stats.plansMade, 2, "\(on.stats)")
        XCTAssertEqual(on.stats.plansDropped, 0, "\(on.stats)")
        XCTAssertEqual(on.stats.fallbacks + on.stats.conflicts, 0, "\(on.stats)")
        XCTAssertGreaterThan(on.stats.planned, 0)
        XCTAssertLessThan(on.stats.arenaBytes, on.stats.requestedBytes, "the arena shares memory between buffers")
        let steady = [3, 4, 5, 9, 11, 12]  // run indices (the evaluation takes no index)
        XCTAssertEqual(steady.map { on.deviceAllocations[$0] }, [Int](repeating: 0, count: steady.count),
                       "device buffers created per planned step: \(on.deviceAllocations)")
        XCTAssertEqual(steady.map { on.hostAllocations[$0] }, [Int](repeating: 0, count: steady.count),
                       "host storages allocated per planned step: \(on.hostAllocations)")
        XCTAssertEqual(off.stats.plansMade, 0)
        XCTAssertGreaterThan(off.stats.stepRequests, 0)
    }

    /// A plan cut into several arenas (as when the step is larger than the device's largest
    /// allocation) gives the same bits.
    func testSeveralArenasGiveTheSameBits() throws {
        let off = try train(plan: false)
        let on = try train(plan: true, arenaLimit: 16 << 10)
        XCTAssertEqual(on.stats.plansMade, 2, "\(on.stats)")
        XCTAssertGreaterThan(on.stats.arenas, 1, "\(on.stats)")
        XCTAssertEqual(on.losses, off.losses)
        XCTAssertEqual(on.evaluation, off.evaluation)
        for (name, values) in off.params { XCTAssertEqual(on.params[name]!, values, "\(name) with and without the plan") }
    }

    /// A tensor kept past its recorded lifetime: the regions overlapping it are not handed out
    /// while it is held (those requests go to the pool), so its values survive the next step.
    func testAHeldTensorIsNotOverwritten() throws {
        let off = try train(plan: false)
        let on = try train(plan: true, holdLogits: true)
        XCTAssertGreaterThan(on.stats.conflicts, 0, "the held logits' region was requested while held: \(on.stats)")
        let held = try XCTUnwrap(on.held)
        XCTAssertEqual(held.after, held.before, "the held logits after the next planned step")
        XCTAssertEqual(on.losses, off.losses)
        for (name, values) in off.params { XCTAssertEqual(on.params[name]!, values, "\(name) with and without the plan") }
    }

    /// The trainer: same losses, weights and test evaluation with and without the plan.
    func testTrainerWithAndWithoutThePlan() throws {
        let data = try tinyDataset(count: 12, seed: 5), test = try tinyDataset(count: 7, seed: 6)
        var options = TrainOptions()
        options.batchSize = 4
        options.epochs = 2
        options.warmupEpochs = 0
        var results: [(losses: [Float], metrics: [Double], params: [[Float]], stats: StepMemory.Stats)] = []
        for plan in [false, true] {
            let backend = try testDevice()
            let memory = backend.stepMemory
            memory.reset()
            let wasEnabled = memory.enabled
            memory.enabled = plan
            defer { memory.enabled = wasEnabled; memory.reset() }
            let model = try SGEResNet(backend, config: tinyConfig(), seed: 7)
            let trainer = try Trainer(backend: backend, model: model, train: data, test: test, options: options)
            let metrics = try trainer.run()
            results.append((trainer.stepLosses, metrics.flatMap { [$0.testLoss ?? -1, $0.testAccuracy ?? -1] },
                            try model.namedParameters.map { try $0.1.value.read() }, memory.stats))
        }
        XCTAssertEqual(results[1].losses, results[0].losses)
        XCTAssertEqual(results[1].metrics, results[0].metrics)
        XCTAssertEqual(results[1].params, results[0].params)
        XCTAssertEqual(results[1].stats.plansMade, 1, "\(results[1].stats)")
        XCTAssertGreaterThan(results[1].stats.planned, 0)
    }
}
