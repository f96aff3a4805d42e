import Foundation
import SGEEngine
import SGENet
import SGETensor
import SGEDeviceTestSupport
import XCTest

/// Image folders: decoding, the crop/resize maths against hand-computed cases, layout errors,
/// the threaded loader (reproducible for any thread count; corrupt files skipped and counted),
/// top-k evaluation, and `sge train/eval --dataset imagefolder` on a generated folder.
final class ImageFolderTests: XCTestCase {
    var dir: String!

    override func setUpWithError() throws {
        dir = (NSTemporaryDirectory() as NSString).appendingPathComponent("sge-imagefolder-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    func path(_ name: String) -> String { (dir as NSString).appendingPathComponent(name) }

    /// Raw pixel values out of `resample`: mean 0 and std 1/255 make the normalisation the identity.
    func raw(_ image: RGBImage, rect: CropRect, width: Int, height: Int, flip: Bool = false) -> [Float] {
        var out = [Float](repeating: -1, count: 3 * width * height)
        out.withUnsafeMutableBufferPointer { dst in
            ImageTransform.resample(image, rect: rect, outWidth: width, outHeight: height, flip: flip,
                                    mean: [0, 0, 0], std: [1 / 255, 1 / 255, 1 / 255], into: dst)
        }
        return out
    }

    func greyRow(_ values: [UInt8]) -> RGBImage {
        RGBImage(width: values.count, height: 1, pixels: values.flatMap { [$0, $0, $0] })
    }

    /// Hand-computed: enlarging [0, 100] to 4 pixels (bilinear, centres 0.25, 0.75, 1.25, 1.75)
    /// gives [0, 25, 75, 100]; shrinking [0, 40, 80, 120] to 2 (triangle of half-width 2 at
    /// centres 1 and 3, weights 3/4, 3/4, 1/4 normalised) gives [50/1.75, 160/1.75]. Tolerance
    /// 1e-3: float accumulation of at most 4 terms.
    func testResampleMatchesHandComputedCases() {
        let up = raw(greyRow([0, 100]), rect: CropRect(x: 0, y: 0, width: 2, height: 1), width: 4, height: 1)
        for (a, b) in zip(up[0..<4], [Float(0), 25, 75, 100]) { XCTAssertEqual(a, b, accuracy: 1e-3) }
        let down = raw(greyRow([0, 40, 80, 120]), rect: CropRect(x: 0, y: 0, width: 4, height: 1), width: 2, height: 1)
        XCTAssertEqual(down[0], 50 / 1.75, accuracy: 1e-3)
        XCTAssertEqual(down[1], 160 / 1.75, accuracy: 1e-3)
        XCTAssertEqual(down[2], down[0], accuracy: 0, "every channel alike")
        let flipped = raw(greyRow([0, 100]), rect: CropRect(x: 0, y: 0, width: 2, height: 1), width: 4, height: 1, flip: true)
        for (a, b) in zip(flipped[0..<4], [Float(100), 75, 25, 0]) { XCTAssertEqual(a, b, accuracy: 1e-3) }
        // A crop of the right half at the same size copies it exactly.
        let half = raw(greyRow([10, 20, 30, 40]), rect: CropRect(x: 2, y: 0, width: 2, height: 1), width: 2, height: 1)
        XCTAssertEqual(Array(half[0..<2]), [30, 40])
    }

    /// Resize(⌊224/0.875⌋ = 256) + CenterCrop(224) of 500×375: resized 341×256, crop offset
    /// (round(58.5) = 59, (256 - 224)/2 = 16), so the source rectangle is x 59·500/341, width
    /// 224·500/341, y 16·375/256, height 224·375/256. Tolerance 1e-9: double arithmetic.
    func testCentreCropRectangle() {
        let r = ImageTransform.centreCrop(width: 500, height: 375, size: 224)
        XCTAssertEqual(r.x, 59 * 500 / 341, accuracy: 1e-9)
        XCTAssertEqual(r.width, 224 * 500 / 341, accuracy: 1e-9)
        XCTAssertEqual(r.y, 16 * 375 / 256, accuracy: 1e-9)
        XCTAssertEqual(r.height, 224 * 375 / 256, accuracy: 1e-9)
        let tall = ImageTransform.centreCrop(width: 60, height: 80, size: 64)  // short side 73, long ⌊73·80/60⌋ = 97
        XCTAssertEqual(tall.width, 64 * 60 / 73, accuracy: 1e-9)
        XCTAssertEqual(tall.y, 17 * 80 / 97, accuracy: 1e-9)  // round((97 - 64) / 2) = 17
    }

    /// RandomResizedCrop: inside the image, area fraction in [0.08, 1] and aspect in [3/4, 4/3]
    /// up to pixel rounding; the same seed gives the same rectangle; a 1000×10 strip falls back to
    /// the centre crop with the aspect clamped (13×10).
    func testRandomResizedCropBounds() {
        var rng = SeededRNG(seed: 5)
        for _ in 0..<500 {
            let r = ImageTransform.randomResizedCrop(width: 80, height: 60, rng: &rng)
            XCTAssertTrue(r.x >= 0 && r.y >= 0 && r.x + r.width <= 80 && r.y + r.height <= 60, "\(r)")
            let fraction = r.width * r.height / 4800
            XCTAssertTrue(fraction > 0.06 && fraction <= 1, "\(r)")
            let aspect = r.width / r.height
            XCTAssertTrue(aspect > 0.6 && aspect < 1.6, "\(r)")
        }
        var a = SeededRNG(seed: 9), b = SeededRNG(seed: 9)
        XCTAssertEqual(ImageTransform.randomResizedCrop(width: 500, height: 375, rng: &a),
                       ImageTransform.randomResizedCrop(width: 500, height: 375, rng: &b))
        var c = SeededRNG(seed: 1)
        XCTAssertEqual(ImageTransform.randomResizedCrop(width: 1000, height: 10, rng: &c), CropRect(x: 493, y: 0, width: 13, height: 10))
    }

    /// JPEG round trip (quality 100: within 8 levels), grey JPEGs expanded to three equal
    /// channels, PNG RGB exact and RGBA with opaque alpha exact, garbage refused with the path.
    func testDecodeJPEGAndPNG() throws {
        let (w, h) = (13, 7)
        let rgb = (0..<(w * h * 3)).map { UInt8(($0 * 5) % 200 + 20) }
        let smooth = (0..<(w * h * 3)).map { i -> UInt8 in UInt8(100 + (i / 3) % w * 3 + i % 3 * 10) }
        try ImageCodec.writeJPEG(path: path("a.jpg"), width: w, height: h, pixels: smooth, quality: 100)
        let jpeg = try ImageCodec.read(path: path("a.jpg"))
        XCTAssertEqual(jpeg.width, w)
        XCTAssertEqual(jpeg.height, h)
        XCTAssertLessThanOrEqual(zip(jpeg.pixels, smooth).map { abs(Int($0) - Int($1)) }.max()!, 8)
        let grey = (0..<(w * h)).map { UInt8($0 * 2) }
        try ImageCodec.writeJPEG(path: path("g.jpg"), width: w, height: h, pixels: grey, channels: 1, quality: 100)
        let g = try ImageCodec.read(path: path("g.jpg"))
        XCTAssertEqual(g.pixels.count, w * h * 3)
        for i in 0..<(w * h) { XCTAssertTrue(g.pixels[3 * i] == g.pixels[3 * i + 1] && g.pixels[3 * i] == g.pixels[3 * i + 2]) }
        try PNG.write(path: path("b.png"), width: w, height: h, rgb: rgb)
        XCTAssertEqual(try ImageCodec.read(path: path("b.png")).pixels, rgb)
        var rgba = [UInt8]()
        for i in 0..<(w * h) { rgba += rgb[(3 * i)..<(3 * i + 3)] + [255] }
        try PNG.write(path: path("c.png"), width: w, height: h, rgb: rgba, channels: 4)
        XCTAssertEqual(try ImageCodec.read(path: path("c.png")).pixels, rgb)
        // DCT-scaled decoding: ⌈13/2⌉ × ⌈7/2⌉, within 24 levels of the full decode's 2×2 means.
        let halfSize = try ImageCodec.decode([UInt8](Data(contentsOf: URL(fileURLWithPath: path("a.jpg")))), path: "a.jpg", denominator: 2)
        XCTAssertEqual(halfSize.width, 7)
        XCTAssertEqual(halfSize.height, 4)
        XCTAssertLessThanOrEqual(abs(Int(halfSize.pixels[0]) - (Int(jpeg.pixels[0]) + Int(jpeg.pixels[3]) + Int(jpeg.pixels[3 * w]) + Int(jpeg.pixels[3 * w + 3])) / 4), 24)
        try Data("GIF89a not really".utf8).write(to: URL(fileURLWithPath: path("d.jpg")))
        XCTAssertThrowsError(try ImageCodec.read(path: path("d.jpg"))) { error in
            guard case SGEError.corruptFile(let p, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(p, self.path("d.jpg"))
        }
    }

    /// Layout errors name the folder: no val/, an empty class folder, val/ classes that differ.
    func testLayoutErrors() throws {
        let root = path("folder")
        try ImageFolderGenerator.write(dir: root, splits: ["train"], classes: 2, perClass: 2, sizes: [(16, 12)])
        XCTAssertThrowsError(try ImageFolder(dir: root, split: "val")) { XCTAssertTrue("\($0)".contains("\(root)/val"), "\($0)") }
        try ImageFolderGenerator.write(dir: root, splits: ["val"], classes: 3, perClass: 1, sizes: [(16, 12)])
        let train = try ImageFolder(dir: root, split: "train")
        XCTAssertEqual(train.classNames, ["class0", "class1"])
        XCTAssertThrowsError(try ImageFolder(dir: root, split: "val", classes: train.classNames)) {
            XCTAssertTrue("\($0)".contains("differ") && "\($0)".contains("class2"), "\($0)")
        }
        try FileManager.default.createDirectory(atPath: "\(root)/train/empty", withIntermediateDirectories: true)
        XCTAssertThrowsError(try ImageFolder(dir: root, split: "train")) { XCTAssertTrue("\($0)".contains("\(root)/train/empty"), "\($0)") }
    }

    /// The loader's batches are identical for 1 and 3 threads; a corrupt JPEG and a text file
    /// named .png are replaced (batches stay full), counted once each and named.
    func testLoaderIsReproducibleAndSkipsCorruptFiles() throws {
        let root = path("folder")
        try ImageFolderGenerator.write(dir: root, splits: ["train"], classes: 3, perClass: 5, sizes: [(80, 60), (37, 51), (64, 64)], pngEvery: 3)
        let good = try Data(contentsOf: URL(fileURLWithPath: "\(root)/train/class0/img0.jpg"))
        try good.prefix(200).write(to: URL(fileURLWithPath: "\(root)/train/class0/truncated.jpg"))
        try Data("text".utf8).write(to: URL(fileURLWithPath: "\(root)/train/class2/note.png"))
        func batches(threads: Int) throws -> ([Batch], SkippedImages) {
            let folder = try ImageFolder(dir: root, split: "train", imageSize: 24, threads: threads)
            let loader = try ImageFolderLoader(folder: folder, batchSize: 4, shuffle: true, seed: 3, augment: true, dropLast: true)
            loader.startEpoch(1, skipBatches: 0)
            var out: [Batch] = []
            while let b = loader.next() { out.append(b) }
            return (out, loader.skipped)
        }
        let (one, skipped1) = try batches(threads: 1)
        let (three, skipped3) = try batches(threads: 3)
        XCTAssertEqual(one.count, 17 / 4)
        for (a, b) in zip(one, three) {
            XCTAssertEqual(a.images, b.images)
            XCTAssertEqual(a.labels, b.labels)
            XCTAssertEqual(a.shape, Shape([4, 3, 24, 24]))
            XCTAssertTrue(a.images.allSatisfy { $0.isFinite })
        }
        XCTAssertEqual(skipped1, skipped3)
        XCTAssertEqual(skipped1.count, 2, "\(skipped1)")
        XCTAssertTrue(skipped1.warning("epoch 2")!.contains("truncated.jpg"), skipped1.warning("epoch 2")!)
        XCTAssertTrue(skipped1.warning("epoch 2")!.contains("note.png"))
    }

    /// Top-k with k = min(5, classes): with 3 classes every label is in the top 3; top-1 equals
    /// the accuracy from the confusion matrix. Evaluating an image folder uses the centre crop.
    func testTopKEvaluation() throws {
        let config = tinyConfig()
        let model = try SGEResNet(ReferenceBackend(), config: config, seed: 1)
        let data = try tinyDataset(count: 10, seed: 2)
        let e = try Trainer.evaluate(model: model, backend: ReferenceBackend(), data: data, batchSize: 4)
        XCTAssertEqual(e.topK, 3)
        XCTAssertEqual(e.topKAccuracy, 1, accuracy: 0)
        XCTAssertEqual(e.count, 10)
        let root = path("folder")
        try ImageFolderGenerator.write(dir: root, splits: ["val"], classes: 3, perClass: 2, sizes: [(20, 15)])
        var rgbConfig = config
        rgbConfig.inputChannels = 3
        let rgbModel = try SGEResNet(ReferenceBackend(), config: rgbConfig, seed: 1)
        let folder = try ImageFolder(dir: root, split: "val", imageSize: 16, threads: 2)
        let f = try Trainer.evaluate(model: rgbModel, backend: ReferenceBackend(), data: folder, batchSize: 4)
        XCTAssertEqual(f.count, 6)
        XCTAssertEqual(f.topKAccuracy, 1, accuracy: 0)
        XCTAssertEqual(f.skipped.count, 0)
    }

    /// The check: a generated folder (4 classes of JPEGs and PNGs at odd sizes, one
    /// corrupt JPEG) trains an epoch of `--model resnet18 --image-size 64` (base width 8) on the
    /// OpenCL device; the corrupt file is counted; `sge eval` prints top-1/top-5 and the classes.
    func testTrainAndEvalCLI() throws {
        _ = try testDevice()
        let root = path("folder")
        try ImageFolderGenerator.write(dir: root, classes: 4, perClass: 6, sizes: [(80, 60), (45, 70), (64, 64), (97, 33)], pngEvery: 3)
        try Data([0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3]).write(to: URL(fileURLWithPath: "\(root)/train/class1/broken.jpg"))
        let run = path("run")
        let t = try CLI.run(["train", "--dataset", "imagefolder", "--data", root, "--model", "resnet18", "--width", "8", "--groups", "4",
                             "--image-size", "64", "--epochs", "1", "--batch-size", "8", "--steps-per-epoch", "2",
                             "--loader-threads", "2", "--out", run], timeout: 600)
        XCTAssertEqual(t.status, 0, t.output)
        XCTAssertTrue(t.stderr.contains("epoch 1:"), t.output)
        XCTAssertTrue(t.stderr.contains("skipped as corrupt or unreadable") && t.stderr.contains("broken.jpg"), t.output)
        let e = try CLI.run(["eval", "\(run)/checkpoint.safetensors", "--dataset", "imagefolder", "--data", root, "--image-size", "64"], timeout: 600)
        XCTAssertEqual(e.status, 0, e.output)
        XCTAssertTrue(e.stdout.contains("top-1") && e.stdout.contains("top-5"), e.output)
        XCTAssertTrue(e.stdout.contains("class3"), e.output)
        XCTAssertTrue(e.stdout.contains("per-class accuracy"), e.output)
    }

    /// Training from an image folder on the reference backend: the step losses do not depend on
    /// the loader's thread count, and a run checkpointed mid-epoch and resumed repeats the
    /// uninterrupted run's losses exactly; the checkpoint stores the class names.
    func testImageFolderTrainingIsReproducibleAndResumes() throws {
        let root = path("folder")
        try ImageFolderGenerator.write(dir: root, splits: ["train"], classes: 3, perClass: 4, sizes: [(30, 22), (19, 27)], pngEvery: 2)
        var config = tinyConfig()
        config.inputChannels = 3
        var options = TrainOptions()
        options.batchSize = 4
        options.epochs = 2
        options.lr = 0.05
        options.horizontalFlip = true  // image folders: RandomResizedCrop + flip
        func trainer(threads: Int) throws -> Trainer {
            let folder = try ImageFolder(dir: root, split: "train", imageSize: 16, threads: threads)
            return try Trainer(backend: ReferenceBackend(), model: try SGEResNet(ReferenceBackend(), config: config, seed: 9),
                               train: folder, test: nil, options: options)
        }
        let full = try trainer(threads: 1)
        try full.run()
        XCTAssertEqual(full.stepLosses.count, 6)
        let threaded = try trainer(threads: 3)
        try threaded.run()
        XCTAssertEqual(threaded.stepLosses, full.stepLosses, "losses must not depend on the loader's thread count")
        let ckpt = path("ckpt.safetensors")
        let first = try trainer(threads: 2)
        first.checkpointPath = ckpt
        try first.runSteps(4)
        try first.saveCheckpointNow()
        XCTAssertEqual(try Weights(path: ckpt, model: nil).classNames, ["class0", "class1", "class2"])
        let resumed = try trainer(threads: 2)
        try resumed.resume(from: ckpt)
        try resumed.run()
        XCTAssertEqual(Array(first.stepLosses) + resumed.stepLosses, full.stepLosses)
    }
}
