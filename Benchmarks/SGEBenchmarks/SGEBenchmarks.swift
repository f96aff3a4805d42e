import Benchmark
import SGEEngine
import SGENet
import SGETensor

/// Whole-layer timings with ordo-one/package-benchmark on the default device (`SGE_DEVICE` selects
/// another; with no OpenCL device the reference backend runs, at small shapes).
/// Per-kernel figures with OpenCL profiling events are `sge bench`'s job; these measure what a caller
/// sees: enqueue + wait, host overhead included.

/// The device, chosen once, and whether it is the (slow) reference backend.
nonisolated(unsafe) let chosen: (backend: any Backend, isReference: Bool) = {
    do {
        let c = try DeviceSelection.choose(nil)
        return (c.backend, c.info == nil)
    } catch {
        return (ReferenceBackend(), true)
    }
}()

let benchmarks: @Sendable () -> Void = {
    let backend = chosen.backend
    let small = chosen.isReference
    Benchmark.defaultConfiguration = .init(metrics: [.wallClock, .throughput], warmupIterations: 2,
                                           maxDuration: .seconds(10), maxIterations: 20)

    // SGE forward + backward at ResNet-50 stage 3 (batch 8, 1024×14×14, G = 64); [2, 64, 7, 7], G = 8 on the reference.
    Benchmark("SGE forward+backward") { benchmark in
        let shape: Shape = small ? [2, 64, 7, 7] : [8, 1024, 14, 14]
        let g = small ? 8 : 64
        var rng = SeededRNG(seed: 1)
        let x = try backend.tensor(rng.uniforms(shape.count), shape, label: "x")
        let go = try backend.tensor(rng.uniforms(shape.count), shape, label: "grad out")
        let w = try backend.tensor(rng.uniforms(g), [g]), b = try backend.tensor(rng.uniforms(g), [g])
        let gw = backend.zeros([g]), gb = backend.zeros([g])
        try backend.synchronize()
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            let (out, saved) = try backend.sgeForward(x, weight: w, bias: b, groups: g, normalize: true)
            let gx = try backend.sgeBackward(go, x: x, weight: w, bias: b, groups: g, normalize: true, saved: saved,
                                             gradWeight: gw, gradBias: gb)
            try backend.synchronize()
            blackHole((out, gx))
        }
    }

    // One training step (forward, loss, backward, SGD, loss read-back) of ResNetConfig.small() on
    // synthetic 1×28×28 images: batch 32 (4 on the reference backend).
    Benchmark("training step small ResNet") { benchmark in
        let batch = small ? 4 : 32
        let config = ResNetConfig.small()
        let model = try SGEResNet(backend, config: config, seed: 1)
        let sgd = try SGD(backend, parameters: model.namedParameters)
        var rng = SeededRNG(seed: 2)
        let shape: Shape = [batch, config.inputChannels, 28, 28]
        let images = rng.uniforms(shape.count)
        let labels = (0..<batch).map { Float($0 % config.classes) }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            let x = try backend.tensor(images, shape, label: "images")
            let y = try backend.tensor(labels, [batch], label: "labels")
            let (loss, _) = try model.trainStep(x, labels: y, optimizer: sgd, lr: 0.01)
            blackHole(try loss.read()[0])
        }
    }
}
