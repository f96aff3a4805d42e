import Foundation
@testable import SGENet
@testable import SGEViz
import SGEEngine
import SGEReference
import SGETensor
import SGEDeviceTestSupport
import XCTest

/// Gate maps and statistics of `sge visualize`, and the `sge study` bookkeeping, on the tiny model.
final class VisualizeTests: XCTestCase {
    /// Reference backend gates (Float, from Double maths) vs the Double reference on the same input:
    /// only the final Float rounding of values in (0, 1) differs.
    static let referenceGateTolerance = 1e-6
    /// Device vs reference gates: the SGE input passes float32 convolutions (CLBlast, another summation
    /// order) and BatchNorms first, ~1e-6 relative per op; the sigmoid's slope ≤ 1/4 with |w| ≤ 2 keeps
    /// the gate within 1e-4 (a wrong group, channel or normalisation moves it by ≥ 1e-2).
    static let deviceGateTolerance = 1e-4

    /// A tiny model with non-trivial SGE parameters (so gates vary over positions), saved and
    /// reloaded through a checkpoint as `sge visualize` does.
    func tinyModel(_ backend: any Backend, normalize: Bool = true, dir: URL) throws -> SGEResNet {
        var config = tinyConfig()
        config.sgeNormalize = normalize
        let model = try SGEResNet(ReferenceBackend(), config: config, seed: 7)
        let w: [String: [Float]] = ["layer1.0.sge": [1.5, -2], "layer2.0.sge": [0.8, -1.2, 2, 0.3]]
        for (name, sge) in model.sgeLayers {
            try sge.weight.value.write(w[name]!)
            try sge.bias.value.write((0..<sge.groups).map { 0.25 - 0.2 * Float($0) })
        }
        // Running statistics away from their initial values, so eval-mode BatchNorm is not the identity.
        for (name, t) in model.namedBuffers where name.hasSuffix("running_var") { try t.write((0..<t.count).map { 0.5 + 0.1 * Float($0) }) }
        let path = dir.appendingPathComponent("tiny.safetensors").path
        try Checkpoint.save(model: model, state: .init(epoch: 1, step: 3, seed: 1, optimizerSteps: 3), path: path)
        return try Visualize.loadModel(checkpoint: path, backend: backend)
    }

    func temporaryDirectory(_ name: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sge-\(name)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    /// Each SGE layer's input computed independently of `forwardCollectingSGEInputs`: the stem and
    /// every block's body run layer by layer, with the shortcut and final ReLU.
    func sgeInputsByHand(_ model: SGEResNet, _ x: Tensor, backend: any Backend) throws -> [String: Tensor] {
        var inputs: [String: Tensor] = [:]
        var h = x
        for (_, l) in model.stem { h = try l.forward(h, training: false) }
        for (i, stage) in model.stages.enumerated() {
            for (b, block) in stage.enumerated() {
                var y = h
                for (name, l) in block.body {
                    if name == "sge" { inputs["layer\(i + 1).\(b).sge"] = y }
                    y = try l.forward(y, training: false)
                }
                let shortcut = try block.downsample?.forward(h, training: false) ?? h
                h = try backend.reluForward(try backend.add(y, shortcut))
            }
        }
        return inputs
    }

    /// Reference.sgeForward's gate (Double) for the layer's captured input and parameters.
    func referenceGate(_ sge: SGE, input: Tensor) throws -> [Double] {
        Reference.sgeForward(try input.read().map(Double.init), shape: input.shape, weight: try sge.weight.value.read().map(Double.init),
                             bias: try sge.bias.value.read().map(Double.init), groups: sge.groups, normalize: sge.normalize).gate
    }

    func testGateMapsEqualTheSGELayersOwnComputation() throws {
        let dir = try temporaryDirectory("gates")
        let backend = ReferenceBackend()
        for normalize in [true, false] {
            let model = try tinyModel(backend, normalize: normalize, dir: dir)
            let data = try tinyDataset(count: 5, seed: 11)
            let x = try backend.tensor(data.images, [5, 1, 8, 8])
            let maps = try Visualize.gateMaps(model: model, images: x)
            XCTAssertEqual(maps.map(\.layer), ["layer1.0.sge", "layer2.0.sge"])
            XCTAssertEqual(maps.map(\.shape), [[5, 2, 8, 8], [5, 4, 4, 4]])
            let inputs = try sgeInputsByHand(model, x, backend: backend)
            let layers = Dictionary(uniqueKeysWithValues: model.sgeLayers)
            for map in maps {
                let sge = layers[map.layer]!, input = inputs[map.layer]!
                XCTAssertEqual(sge.normalize, normalize)
                let expected = try referenceGate(sge, input: input)
                assertClose(map.values, expected.map(Float.init), atol: Self.referenceGateTolerance, rtol: 0, "\(map.layer) gate vs Reference.sgeForward")
                // The layer's own forward output is x·s: out/x recovers the gate wherever x is not tiny.
                let out = try sge.forward(input, training: false).read(), xin = try input.read()
                let (k, m) = (input.shape.c / sge.groups, input.shape.h * input.shape.w)
                var checked = 0
                for i in 0..<xin.count where abs(xin[i]) > 1e-2 {
                    let n = i / (input.shape.c * m), c = (i / m) % input.shape.c, p = i % m
                    let gate = map.values[(n * sge.groups + c / k) * m + p]
                    XCTAssertEqual(Double(out[i] / xin[i]), Double(gate), accuracy: 1e-4, "\(map.layer) out/x at \(i)")
                    checked += 1
                }
                XCTAssertGreaterThan(checked, xin.count / 4)
                // Gates vary over positions (the test would not see a wrong position order otherwise).
                XCTAssertGreaterThan((map.values.max() ?? 0) - (map.values.min() ?? 0), 0.05)
            }
        }
    }

    func testDeviceGateMapsMatchReference() throws {
        let device = try testDevice()
        let dir = try temporaryDirectory("device-gates")
        let data = try tinyDataset(count: 7, seed: 12)
        let onDevice = try Visualize.gateMaps(model: try tinyModel(device, dir: dir), images: try device.tensor(data.images, [7, 1, 8, 8]))
        let reference = ReferenceBackend()
        let onReference = try Visualize.gateMaps(model: try tinyModel(reference, dir: dir), images: try reference.tensor(data.images, [7, 1, 8, 8]))
        XCTAssertEqual(onDevice.map(\.shape), onReference.map(\.shape))
        for (d, r) in zip(onDevice, onReference) {
            assertClose(d.values, r.values, shape: d.shape, atol: Self.deviceGateTolerance, rtol: 0, "\(d.layer) device vs reference")
        }
    }

    func testBilinearMatchesPyTorchAlignCornersFalse() {
        // F.interpolate(torch.tensor([[[[0., 1.], [2., 3.]]]]), size=4, mode="bilinear", align_corners=False)
        let up = Visualize.bilinear([0, 1, 2, 3][...], height: 2, width: 2, toHeight: 4, toWidth: 4)
        XCTAssertEqual(up, [0, 0.25, 0.75, 1, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2, 2.25, 2.75, 3])
        // Same size is the identity; a non-square 1×3 → 2×5 keeps the ends.
        XCTAssertEqual(Visualize.bilinear([4, 5, 6, 7][...], height: 2, width: 2, toHeight: 2, toWidth: 2), [4, 5, 6, 7])
        let wide = Visualize.bilinear([1, 2, 3][...], height: 1, width: 3, toHeight: 2, toWidth: 5)
        XCTAssertEqual(wide.first, 1)
        XCTAssertEqual(wide[4], 3)
        XCTAssertEqual(wide[2], 2, accuracy: 1e-6)
    }

    func testGridPNGsShowTheGatesOverTheImages() throws {
        let dir = try temporaryDirectory("grids")
        let backend = ReferenceBackend()
        let model = try tinyModel(backend, dir: dir)
        let data = try tinyDataset(count: 6, seed: 13)
        let out = dir.appendingPathComponent("viz").path
        let paths = try Visualize.writeGrids(model: model, backend: backend, data: data, count: 3, outDir: out)
        XCTAssertEqual(paths.map { ($0 as NSString).lastPathComponent }, ["layer1.0.sge.png", "layer2.0.sge.png"])
        let x = try backend.tensor(Array(data.images[0..<(3 * 64)]), [3, 1, 8, 8])
        let inputs = try sgeInputsByHand(model, x, backend: backend)
        for ((name, sge), path) in zip(model.sgeLayers, paths) {
            let png = try PNG.read(path: path)
            let layout = Visualize.layout(rows: 3, groups: sge.groups, height: 8, width: 8)
            XCTAssertEqual(png.channels, 3)
            XCTAssertEqual(png.height, layout.size.height, "\(name)")
            XCTAssertGreaterThanOrEqual(png.width, layout.size.width, "\(name)")
            XCTAssertEqual(layout.scale, 12, "8×8 images are drawn 12× larger")
            let input = inputs[name]!
            let gate = try referenceGate(sge, input: input).map(Float.init)
            let (gh, gw) = (input.shape.h, input.shape.w)
            func pixel(_ x: Int, _ y: Int) -> [Int] { (0..<3).map { Int(png.pixels[(y * png.width + x) * 3 + $0]) } }
            for row in 0..<3 {
                let image = Visualize.imageRGB(data.images, index: row, channels: 1, height: 8, width: 8, mean: data.mean, std: data.std)
                for g in 0..<sge.groups {
                    let plane = gh * gw
                    let up = Visualize.bilinear(gate[((row * sge.groups + g) * plane)..<((row * sge.groups + g + 1) * plane)],
                                                height: gh, width: gw, toHeight: 8, toWidth: 8)
                    let origin = layout.origin(row: row, column: g + 1)
                    for (py, px) in [(0, 0), (3, 5), (7, 2), (6, 7)] {
                        let expected = Visualize.blend(image[py * 8 + px], gate: up[py * 8 + px])
                        let got = pixel(origin.x + px * 12 + 6, origin.y + py * 12 + 6)
                        for (a, b) in zip(got, [Int(expected.r), Int(expected.g), Int(expected.b)]) {
                            XCTAssertLessThanOrEqual(abs(a - b), 1, "\(name) image \(row) group \(g) pixel (\(px), \(py)): \(got) vs \(expected)")
                        }
                    }
                }
                // Column 0 is the plain (un-normalised) image.
                let o = layout.origin(row: row, column: 0)
                XCTAssertEqual(pixel(o.x + 3 * 12 + 6, o.y + 4 * 12 + 6)[0], Int(image[4 * 8 + 3].0.rounded()))
            }
        }
    }

    func testGateStatisticsAndTheirFiles() throws {
        let dir = try temporaryDirectory("stats")
        let backend = ReferenceBackend()
        let model = try tinyModel(backend, dir: dir)
        let data = try tinyDataset(count: 7, seed: 14)
        let stats = try Visualize.gateStatistics(model: model, backend: backend, data: data, limit: 6, batchSize: 4)
        XCTAssertEqual(stats.map(\.layer), ["layer1.0.sge", "layer2.0.sge"])
        let x = try backend.tensor(Array(data.images[0..<(6 * 64)]), [6, 1, 8, 8])
        let inputs = try sgeInputsByHand(model, x, backend: backend)
        for (layer, (name, sge)) in zip(stats, model.sgeLayers) {
            XCTAssertEqual(layer.images, 6)
            let input = inputs[name]!
            let gate = try referenceGate(sge, input: input)
            let m = input.shape.h * input.shape.w
            for g in 0..<sge.groups {
                var all: [Double] = [], spreads: [Double] = []
                for n in 0..<6 {
                    let slab = Array(gate[((n * sge.groups + g) * m)..<((n * sge.groups + g + 1) * m)])
                    all += slab
                    let mean = slab.reduce(0, +) / Double(m)
                    spreads.append((slab.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(m)).squareRoot())
                }
                let mean = all.reduce(0, +) / Double(all.count)
                let std = (all.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(all.count)).squareRoot()
                let s = layer.groupStats[g]
                XCTAssertEqual(s.mean, mean, accuracy: 1e-6)
                XCTAssertEqual(s.std, std, accuracy: 1e-5)
                XCTAssertEqual(s.spatialSpread, spreads.reduce(0, +) / 6, accuracy: 1e-5)
                XCTAssertEqual(s.weight, try sge.weight.value.read()[g])
                XCTAssertGreaterThan(s.spatialSpread, 0.01)
            }
        }
        // Batching does not change the result.
        let oneBatch = try Visualize.gateStatistics(model: model, backend: backend, data: data, limit: 6, batchSize: 6)
        for (a, b) in zip(stats, oneBatch) {
            for (p, q) in zip(a.groupStats, b.groupStats) {
                XCTAssertEqual(p.mean, q.mean, accuracy: 1e-12)
                XCTAssertEqual(p.spatialSpread, q.spatialSpread, accuracy: 1e-12)
            }
        }
        let md = Visualize.statsMarkdown(stats)
        XCTAssertTrue(md.contains("| layer | group | weight | bias | gate mean | gate std | spatial spread |"), md)
        XCTAssertTrue(md.contains(String(format: "| layer2.0.sge | 3 | %.4f |", stats[1].groupStats[3].weight)), md)
        let json = try JSONSerialization.jsonObject(with: try Visualize.statsJSON(stats, extra: ["checkpoint": "x"])) as! [String: Any]
        let layers = json["layers"] as! [[String: Any]]
        XCTAssertEqual(layers.count, 2)
        XCTAssertEqual((layers[1]["group_stats"] as! [[String: Any]]).count, 4)
        XCTAssertEqual(json["checkpoint"] as? String, "x")
    }

    func testAblationOptionsReachTheModel() throws {
        var config = tinyConfig()
        config.sgeNormalize = false
        config.sgeInitWeight = 0.5
        config.sgeInitBias = -1
        config.groups = [4, 8]
        let model = try SGEResNet(ReferenceBackend(), config: config, seed: 1)
        XCTAssertEqual(model.sgeLayers.map { $0.1.groups }, [4, 8])
        for (_, sge) in model.sgeLayers {
            XCTAssertFalse(sge.normalize)
            XCTAssertEqual(try sge.weight.value.read(), [Float](repeating: 0.5, count: sge.groups))
            XCTAssertEqual(try sge.bias.value.read(), [Float](repeating: -1, count: sge.groups))
        }
        // The study's variants set the same fields.
        let v = StudyVariant.sge(groups: 2, normalize: false).apply(to: tinyConfig())
        XCTAssertEqual(v.groups, [2, 2])
        XCTAssertFalse(v.sgeNormalize)
        XCTAssertTrue(try SGEResNet(ReferenceBackend(), config: StudyVariant.noSGE.apply(to: tinyConfig()), seed: 1).sgeLayers.isEmpty)
        // A model without SGE cannot be visualised: a typed error, not a crash.
        let dir = try temporaryDirectory("nosge")
        XCTAssertThrowsError(try Visualize.writeGrids(model: try SGEResNet(ReferenceBackend(), config: StudyVariant.noSGE.apply(to: tinyConfig()), seed: 1),
                                                      backend: ReferenceBackend(), data: try tinyDataset(count: 2, seed: 1), count: 2,
                                                      outDir: dir.path)) { error in
            XCTAssertTrue("\(error)".contains("no SGE layers"), "\(error)")
        }
    }

    func testStudySummaryIsMeanAndSampleStd() {
        func run(_ v: StudyVariant, _ seed: UInt64, _ acc: Double, ips: Double = 100) -> StudyRun {
            StudyRun(key: "\(v.key) \(seed)", variant: v.name, useSGE: v.useSGE, groups: v.groups, normalize: v.normalize, seed: seed, epochs: 1,
                     batchSize: 4, lr: 0.1, trainImages: 8, testImages: 8, dataset: "synthetic", testAccuracy: acc, testLoss: 1 - acc,
                     trainLoss: 1, imagesPerSecond: ips, seconds: 1, device: "test")
        }
        let g4 = StudyVariant.sge(groups: 4)
        let runs = [run(g4, 1, 0.8, ips: 90), run(.noSGE, 1, 0.7), run(g4, 2, 0.9, ips: 100), run(g4, 3, 1.0, ips: 110)]
        let s = Study.summarize(runs, order: [.noSGE, .sge(groups: 2), g4])
        XCTAssertEqual(s.map(\.variant), [.noSGE, g4], "variants without runs are left out, order kept")
        XCTAssertEqual(s[1].runs, 3)
        XCTAssertEqual(s[1].meanAccuracy, 0.9, accuracy: 1e-12)
        XCTAssertEqual(s[1].stdAccuracy, 0.1, accuracy: 1e-12, "sample std (n - 1)")
        XCTAssertEqual(s[1].meanImagesPerSecond, 100, accuracy: 1e-9)
        XCTAssertEqual(s[0].stdAccuracy, 0, "one run: std 0")
        let md = Study.markdown(s, title: "t", device: "d")
        XCTAssertTrue(md.contains("| variant | runs | test accuracy (%) | test loss | images/s |"), md)
        XCTAssertTrue(md.contains("| SGE G=4 | 3 | 90.00 ± 10.00 | 0.1000 | 100 |"), md)
        XCTAssertTrue(md.contains("| no SGE | 1 | 70.00 ± 0.00 |"), md)
    }

    func testStudyRunsTheGridOnceAndResumes() throws {
        let dir = try temporaryDirectory("study")
        let backend = ReferenceBackend()
        let train = try tinyDataset(count: 8, seed: 15), test = try tinyDataset(count: 6, seed: 16)
        var settings = StudySettings()
        settings.epochs = 1
        settings.batchSize = 4
        settings.lr = 0.05
        settings.trainSubset = nil
        func study(seeds: [UInt64]) throws -> Study {
            try Study(outDir: dir.path, backend: backend, deviceName: "reference", baseConfig: tinyConfig(), train: train, test: test,
                      settings: settings, variants: [.noSGE, .sge(groups: 2)], seeds: seeds)
        }
        let first = try study(seeds: [1])
        XCTAssertEqual(try first.run(), 2)
        let lines = { try String(contentsOfFile: first.jsonlPath, encoding: .utf8).split(separator: "\n") }
        XCTAssertEqual(try lines().count, 2)
        let runs = try first.gridRuns()
        XCTAssertEqual(runs.map(\.variant), ["no SGE", "SGE G=2"])
        for r in runs {
            XCTAssertTrue((0...1).contains(r.testAccuracy))
            XCTAssertTrue(r.testLoss.isFinite && r.imagesPerSecond > 0 && r.seconds > 0)
            XCTAssertEqual(r.testImages, 6)
        }
        // Same grid again: nothing new is trained, the file is unchanged.
        XCTAssertEqual(try study(seeds: [1]).run(), 0)
        XCTAssertEqual(try lines().count, 2)
        // One more seed: only its two runs are trained.
        let more = try study(seeds: [1, 2])
        XCTAssertEqual(try more.run(), 2)
        XCTAssertEqual(try lines().count, 4)
        // The reports cover the grid's finished runs.
        let md = try String(contentsOfFile: more.markdownPath, encoding: .utf8)
        let summary = Study.summarize(try more.gridRuns(), order: more.variants)
        XCTAssertEqual(summary.map(\.runs), [2, 2])
        XCTAssertTrue(md.contains(String(format: "| SGE G=2 | 2 | %.2f ± %.2f |", 100 * summary[1].meanAccuracy, 100 * summary[1].stdAccuracy)), md)
        let png = try PNG.read(path: more.pngPath)
        XCTAssertGreaterThan(png.width, 100)
        XCTAssertEqual(png.height, 520)
        // A damaged last line (a run cut off mid-write) is skipped, not fatal.
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: more.jsonlPath))
        handle.seekToEndOfFile()
        handle.write(Data("{\"key\": \"trunc".utf8))
        try handle.close()
        XCTAssertEqual(try more.recordedRuns().count, 4)
    }
}
