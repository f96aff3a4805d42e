import Foundation
import SGENet
import SGETensor
import SGEDeviceTestSupport
import XCTest

/// Readers, datasets, the batch loader, PNG output and the metrics plot.
final class DataTests: XCTestCase {
    var dir: String!

    override func setUpWithError() throws {
        dir = (NSTemporaryDirectory() as NSString).appendingPathComponent("sge-data-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    // MARK: - Helpers

    func path(_ name: String) -> String { (dir as NSString).appendingPathComponent(name) }

    func write(_ name: String, _ bytes: [UInt8], gzip: Bool = false) throws -> String {
        let p = path(name)
        try Data(gzip ? try Gzip.compress(bytes) : bytes).write(to: URL(fileURLWithPath: p))
        return p
    }

    func be32(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }

    func idxImages(count: Int, rows: Int, cols: Int, seed: UInt64 = 1) -> (file: [UInt8], pixels: [UInt8]) {
        var rng = SeededRNG(seed: seed)
        let pixels = (0..<(count * rows * cols)).map { _ in UInt8(rng.int(256)) }
        return ([0, 0, 8, 3] + be32(count) + be32(rows) + be32(cols) + pixels, pixels)
    }

    func idxLabels(_ labels: [UInt8]) -> [UInt8] { [0, 0, 8, 1] + be32(labels.count) + labels }

    /// Asserts `body` throws `SGEError.corruptFile` for `file` with a reason containing `needle`.
    func assertCorrupt<T>(_ file: String, _ needle: String, _ body: () throws -> T, line: UInt = #line) {
        XCTAssertThrowsError(try body(), line: line) { error in
            guard case SGEError.corruptFile(let p, let reason) = error else {
                return XCTFail("expected corruptFile, got \(error)", line: line)
            }
            XCTAssertEqual(p, file, line: line)
            XCTAssertTrue(reason.contains(needle), "reason '\(reason)' lacks '\(needle)'", line: line)
            XCTAssertTrue("\(error)".contains(file), line: line)
        }
    }

    /// A dataset of `n` 1×3×4 images whose every pixel of example i is i (so order is visible).
    func indexDataset(_ n: Int, channels: Int = 1, height: Int = 3, width: Int = 4) throws -> Dataset {
        let size = channels * height * width
        return try Dataset(images: (0..<(n * size)).map { Float($0 / size) }, labels: (0..<n).map { Int32($0 % 10) },
                           channels: channels, height: height, width: width, classNames: Dataset.mnistClasses,
                           mean: [Float](repeating: 0.5, count: channels), std: [Float](repeating: 0.25, count: channels),
                           source: "synthetic")
    }

    func allBatches(_ loader: BatchLoader, epoch: Int, skip: Int = 0) -> [Batch] {
        loader.startEpoch(epoch, skipBatches: skip)
        var out = [Batch]()
        while let b = loader.next() { out.append(b) }
        return out
    }

    // MARK: - IDX

    func testIDXPlainAndGzipped() throws {
        // 7 images of 5×3 (sizes that line up with nothing), 7 labels.
        let (file, pixels) = idxImages(count: 7, rows: 5, cols: 3)
        let labels: [UInt8] = [0, 9, 3, 3, 1, 7, 2]
        for gzip in [false, true] {
            let ip = try write("img\(gzip)", file, gzip: gzip), lp = try write("lab\(gzip)", idxLabels(labels), gzip: gzip)
            let (images, readLabels) = try IDX.readPair(images: ip, labels: lp)
            XCTAssertEqual([images.count, images.rows, images.cols], [7, 5, 3])
            XCTAssertEqual(images.pixels, pixels)
            XCTAssertEqual(readLabels, labels)
        }
        // A file gzipped by the system gzip (not our deflate) inflates too.
        if FileManager.default.isExecutableFile(atPath: "/bin/gzip") {
            let p = try write("sys", file)
            let task = Process()
            task.executableURL = URL(fileURLWithPath: "/bin/gzip")
            task.arguments = ["-f", p]
            try task.run()
            task.waitUntilExit()
            XCTAssertEqual(try IDX.readImages(path: p + ".gz").pixels, pixels)
        }
    }

    func testIDXCorruptFiles() throws {
        let (file, _) = idxImages(count: 4, rows: 2, cols: 3)
        let labels = idxLabels([1, 2, 3, 4])

        var p = try write("truncated", Array(file.dropLast()))
        assertCorrupt(p, "truncated") { try IDX.readImages(path: p) }
        p = try write("trailing", file + [0])
        assertCorrupt(p, "trailing") { try IDX.readImages(path: p) }
        p = try write("short-header", [0, 0, 8, 3, 0, 0])
        assertCorrupt(p, "truncated header") { try IDX.readImages(path: p) }
        p = try write("labels-as-images", labels)
        assertCorrupt(p, "wrong magic") { try IDX.readImages(path: p) }
        p = try write("images-as-labels", file)
        assertCorrupt(p, "wrong magic") { try IDX.readLabels(path: p) }

        // A gzip stream cut in half.
        let gz = try Gzip.compress(file + [UInt8](repeating: 7, count: 5000))
        p = try write("cut.gz", Array(gz.prefix(gz.count / 2)))
        assertCorrupt(p, "truncated gzip") { try IDX.readImages(path: p) }
        // Damaged deflate data.
        var damaged = gz
        for i in 12..<min(40, damaged.count) { damaged[i] ^= 0xFF }
        p = try write("damaged.gz", damaged)
        XCTAssertThrowsError(try IDX.readImages(path: p)) { error in
            guard case SGEError.corruptFile(let fp, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(fp, p)
        }

        // Counts must match, labels must be below the class count.
        let ip = try write("images", file)
        let lp = try write("labels3", idxLabels([1, 2, 3]))
        assertCorrupt(lp, "count mismatch") { try IDX.readPair(images: ip, labels: lp) }
        let bad = try write("labels-bad", idxLabels([1, 2, 10, 4]))
        assertCorrupt(bad, "label 10") { try IDX.readPair(images: ip, labels: bad) }

        // Missing file: an io error with the hint.
        XCTAssertThrowsError(try IDX.readImages(path: path("missing"), hint: "pass --data DIR")) { error in
            guard case SGEError.io(let fp, let reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(fp, path("missing"))
            XCTAssertTrue(reason.contains("no such file") && reason.contains("--data"), reason)
        }
    }

    // MARK: - CIFAR

    func cifarRecords(_ labels: [UInt8], seed: UInt64 = 2) -> (file: [UInt8], images: [UInt8]) {
        var rng = SeededRNG(seed: seed)
        var file = [UInt8](), images = [UInt8]()
        for l in labels {
            let img = (0..<CIFAR.imageBytes).map { _ in UInt8(rng.int(256)) }
            file += [l] + img
            images += img
        }
        return (file, images)
    }

    func testCIFARReader() throws {
        let labels: [UInt8] = [3, 0, 9]
        let (file, images) = cifarRecords(labels)
        for gzip in [false, true] {
            let p = try write("batch\(gzip).bin", file, gzip: gzip)
            let batch = try CIFAR.readBatch(path: p)
            XCTAssertEqual(batch.labels, labels)
            XCTAssertEqual(batch.images, images)
        }
        var p = try write("short.bin", Array(file.dropLast(5)))
        assertCorrupt(p, "not a multiple") { try CIFAR.readBatch(path: p) }
        var badLabel = file
        badLabel[CIFAR.recordBytes] = 10
        p = try write("label.bin", badLabel)
        assertCorrupt(p, "record 1 has label 10") { try CIFAR.readBatch(path: p) }
        p = try write("empty.bin", [])
        assertCorrupt(p, "empty") { try CIFAR.readBatch(path: p) }
    }

    // MARK: - Dataset loaders

    func testDatasetLoadersNormalise() throws {
        // Fashion-MNIST layout (gzipped test split), 3 images of 2×2 with known bytes.
        let pixels: [UInt8] = [0, 255, 128, 7, 1, 2, 3, 4, 250, 251, 252, 253]
        _ = try write("t10k-images-idx3-ubyte.gz", [0, 0, 8, 3] + be32(3) + be32(2) + be32(2) + pixels, gzip: true)
        _ = try write("t10k-labels-idx1-ubyte.gz", idxLabels([4, 5, 6]), gzip: true)
        let fashion = try Dataset.fashionMNIST(dir: dir, train: false)
        XCTAssertEqual([fashion.count, fashion.channels, fashion.height, fashion.width], [3, 1, 2, 2])
        XCTAssertEqual(fashion.labels, [4, 5, 6])
        XCTAssertEqual(fashion.classNames.count, 10)
        for (x, p) in zip(fashion.images, pixels) {
            XCTAssertEqual(x, Float((Double(p) / 255 - 0.2860) / 0.3530), accuracy: 1e-6)
        }
        // The training split is missing: an io error that says how to get it.
        XCTAssertThrowsError(try Dataset.fashionMNIST(dir: dir, train: true)) { error in
            guard case SGEError.io(let p, let reason) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(p.hasSuffix("train-images-idx3-ubyte.gz"), p)
            XCTAssertTrue(reason.contains("dataset-fashion-mnist") && reason.contains("--data"), reason)
        }
        // MNIST statistics on the same files.
        let mnist = try Dataset.mnist(dir: dir, train: false)
        XCTAssertEqual(mnist.images[1], Float((1 - 0.1307) / 0.3081), accuracy: 1e-6)

        // CIFAR-10 with one record per training batch (nested cifar-10-batches-bin folder).
        let nested = path("cifar-10-batches-bin")
        try FileManager.default.createDirectory(atPath: nested, withIntermediateDirectories: true)
        var expected = [UInt8]()
        for (i, name) in (CIFAR.trainFiles + CIFAR.testFiles).enumerated() {
            let (file, img) = cifarRecords([UInt8(i)], seed: UInt64(10 + i))
            try Data(file).write(to: URL(fileURLWithPath: (nested as NSString).appendingPathComponent(name)))
            if i < 5 { expected += img }
        }
        let cifar = try Dataset.cifar10(dir: dir, train: true)
        XCTAssertEqual([cifar.count, cifar.channels, cifar.height, cifar.width], [5, 3, 32, 32])
        XCTAssertEqual(cifar.labels, [0, 1, 2, 3, 4])
        let mean: [Double] = [0.4914, 0.4822, 0.4465], std: [Double] = [0.2470, 0.2435, 0.2616]
        for i in [0, 1023, 1024, 2047, 2048, 3071, 3072 + 1500, 4 * 3072 + 3000] {
            let c = (i % 3072) / 1024
            XCTAssertEqual(cifar.images[i], Float((Double(expected[i]) / 255 - mean[c]) / std[c]), accuracy: 1e-6, "index \(i)")
        }
        XCTAssertEqual(try Dataset.cifar10(dir: nested, train: false).count, 1)
    }

    // MARK: - Batch loader

    func testBatchLoaderDeterministicPerEpoch() throws {
        let data = try indexDataset(23)
        let a = try BatchLoader(dataset: data, batchSize: 5, seed: 42)
        let b = try BatchLoader(dataset: data, batchSize: 5, seed: 42, prefetch: false)
        XCTAssertEqual(a.batchesPerEpoch, 4)
        func order(_ batches: [Batch]) -> [Int] { batches.flatMap { bt in stride(from: 0, to: bt.images.count, by: 12).map { Int(bt.images[$0]) } } }

        // Same (seed, epoch) → same order, whether prefetched or not and whatever ran before.
        _ = allBatches(a, epoch: 0)
        let e3 = order(allBatches(a, epoch: 3))
        XCTAssertEqual(e3, order(allBatches(b, epoch: 3)))
        XCTAssertEqual(e3.count, 20)
        XCTAssertEqual(Set(e3).count, 20, "an example appeared twice in one epoch")
        // Labels travel with their images.
        for bt in allBatches(a, epoch: 3) {
            for i in 0..<bt.count { XCTAssertEqual(bt.labels[i], Int32(Int(bt.images[i * 12]) % 10)) }
        }
        // A different epoch or seed gives a different order.
        XCTAssertNotEqual(e3, order(allBatches(a, epoch: 4)))
        XCTAssertNotEqual(e3, order(allBatches(try BatchLoader(dataset: data, batchSize: 5, seed: 43), epoch: 3)))
        XCTAssertEqual(BatchLoader.permutation(count: 23, seed: 42, epoch: 3), BatchLoader.permutation(count: 23, seed: 42, epoch: 3))
        // Resuming mid-epoch sees the remaining batches of the uninterrupted epoch.
        let resumed = allBatches(b, epoch: 3, skip: 2)
        XCTAssertEqual(resumed.map(\.index), [2, 3])
        XCTAssertEqual(order(resumed), Array(e3[10...]))

        // Keeping the partial batch: 5 batches, the last of 3, every example once.
        let keep = try BatchLoader(dataset: data, batchSize: 5, seed: 42, dropLast: false)
        let kb = allBatches(keep, epoch: 1)
        XCTAssertEqual(kb.map(\.count), [5, 5, 5, 5, 3])
        XCTAssertEqual(kb.last!.shape, Shape([3, 1, 3, 4]))
        XCTAssertEqual(Set(order(kb)), Set(0..<23))
        // No shuffle: dataset order.
        let plain = try BatchLoader(dataset: data, batchSize: 4, shuffle: false)
        XCTAssertEqual(order(allBatches(plain, epoch: 7)), Array(0..<20))
        // Bad options are errors, not traps.
        XCTAssertThrowsError(try BatchLoader(dataset: data, batchSize: 0))
        XCTAssertThrowsError(try BatchLoader(dataset: data, batchSize: 24))
        XCTAssertThrowsError(try BatchLoader(dataset: data, batchSize: 4, augmentation: Augmentation(cropPadding: -1)))
    }

    func testAugmentationShapesAndContent() throws {
        // 2 channels of 5×7 with distinct values per pixel, 40 examples.
        let (n, c, h, w) = (40, 2, 5, 7)
        let size = c * h * w
        var images = [Float]()
        for i in 0..<n { for j in 0..<size { images.append(Float(i * 1000 + j)) } }
        let data = try Dataset(images: images, labels: [Int32](repeating: 1, count: n), channels: c, height: h, width: w,
                               classNames: Dataset.mnistClasses, mean: [0.5, 0.25], std: [0.5, 0.25], source: "synthetic")
        let black = data.blackValue
        XCTAssertEqual(black, [-1, -1])

        // Flip only: each image is itself or its mirror, and both happen.
        let flipLoader = try BatchLoader(dataset: data, batchSize: 8, seed: 5, augmentation: Augmentation(horizontalFlip: true))
        var flips = 0, same = 0
        for bt in allBatches(flipLoader, epoch: 0) {
            XCTAssertEqual(bt.shape, Shape([8, c, h, w]))
            for b in 0..<bt.count {
                let img = Array(bt.images[(b * size)..<((b + 1) * size)])
                let base = Int(img[0]) / 1000 * 1000
                let original = (0..<size).map { Float(base + $0) }
                let mirrored = (0..<size).map { j -> Float in let x = j % w; return Float(base + j - x + (w - 1 - x)) }
                if img == original { same += 1 } else if img == mirrored { flips += 1 } else { XCTFail("neither original nor mirror") }
            }
        }
        XCTAssertGreaterThan(flips, 5)
        XCTAssertGreaterThan(same, 5)

        // Crop with padding 2: each output pixel is black padding or the input pixel shifted by one
        // (dy, dx) in -2...2 for the whole image.
        let cropLoader = try BatchLoader(dataset: data, batchSize: 8, seed: 5, augmentation: Augmentation(cropPadding: 2))
        var shifts = Set<[Int]>()
        let batches = allBatches(cropLoader, epoch: 2)
        XCTAssertEqual(batches.count, 5)
        for bt in batches {
            XCTAssertEqual(bt.images.count, 8 * size)
            for b in 0..<bt.count {
                let img = Array(bt.images[(b * size)..<((b + 1) * size)])
                guard let anchor = img.first(where: { $0 >= 0 }) else { XCTFail("all padding"); continue }
                let base = Int(anchor) / 1000 * 1000
                let ai = img.firstIndex(of: anchor)!, aj = Int(anchor) - base
                let (dy, dx) = (aj % (h * w) / w - ai % (h * w) / w, aj % w - ai % w)
                XCTAssertTrue(abs(dy) <= 2 && abs(dx) <= 2)
                shifts.insert([dy, dx])
                for j in 0..<size {
                    let (ch, y, x) = (j / (h * w), j % (h * w) / w, j % w)
                    let (sy, sx) = (y + dy, x + dx)
                    let want: Float = (sy >= 0 && sy < h && sx >= 0 && sx < w) ? Float(base + ch * h * w + sy * w + sx) : black[ch]
                    XCTAssertEqual(img[j], want)
                }
            }
        }
        XCTAssertGreaterThan(shifts.count, 5, "crops should vary")
        // Augmentation is reproducible, prefetched or not.
        let again = try BatchLoader(dataset: data, batchSize: 8, seed: 5, augmentation: Augmentation(cropPadding: 2), prefetch: false)
        XCTAssertEqual(allBatches(again, epoch: 2).map(\.images), batches.map(\.images))
    }

    // MARK: - PNG, colour map (the plot tests are in SGEVizTests)

    func testPNGRoundTrip() throws {
        var rng = SeededRNG(seed: 3)
        for channels in [3, 4] {
            let (w, h) = (7, 93)
            let pixels = (0..<(w * h * channels)).map { _ in UInt8(rng.int(256)) }
            let p = path("img\(channels).png")
            try PNG.write(path: p, width: w, height: h, rgb: pixels, channels: channels)
            let back = try PNG.read(path: p)
            XCTAssertEqual(back.width, w)
            XCTAssertEqual(back.height, h)
            XCTAssertEqual(back.channels, channels)
            XCTAssertEqual(back.pixels, pixels)
        }
        // Only the two PNGs remain: the temporary files were renamed away.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["img3.png", "img4.png"])
        XCTAssertThrowsError(try PNG.write(path: path("bad.png"), width: 2, height: 2, rgb: [1, 2, 3]))
        XCTAssertThrowsError(try PNG.write(path: path("no/such/dir/x.png"), width: 1, height: 1, rgb: [1, 2, 3]))
        let notPNG = try write("not.png", [1, 2, 3, 4])
        assertCorrupt(notPNG, "not a readable PNG") { try PNG.read(path: notPNG) }
    }

    func testViridis() {
        XCTAssertTrue(Colormap.viridis(0) == (68, 1, 84))
        XCTAssertTrue(Colormap.viridis(1) == (253, 231, 37))
        XCTAssertTrue(Colormap.viridis(0.5) == (38, 130, 142))
        XCTAssertTrue(Colormap.viridis(-3) == Colormap.viridis(0))
        XCTAssertTrue(Colormap.viridis(7) == Colormap.viridis(1))
        // Between anchors 0 and 1/8 the red channel goes 68 → 72.
        XCTAssertEqual(Colormap.viridis(1.0 / 16).0, 70)
    }

    // MARK: - The real Fashion-MNIST, when installed

    func testRealFashionMNISTLoads() throws {
        guard FileManager.default.fileExists(atPath: Dataset.fashionMNISTDirectory) else {
            throw missingDevice("\(Dataset.fashionMNISTDirectory) not installed")
        }
        let start = Date()
        let train = try Dataset.fashionMNIST(train: true)
        let test = try Dataset.fashionMNIST(train: false)
        let seconds = Date().timeIntervalSince(start)
        print("Fashion-MNIST: loaded \(train.count) + \(test.count) images in \(String(format: "%.2f", seconds)) s")
        XCTAssertEqual([train.count, train.channels, train.height, train.width], [60000, 1, 28, 28])
        XCTAssertEqual([test.count, test.channels, test.height, test.width], [10000, 1, 28, 28])
        XCTAssertEqual(train.images.count, 60000 * 784)
        // Every class appears 6000 times in the training set.
        var perClass = [Int](repeating: 0, count: 10)
        for l in train.labels { perClass[Int(l)] += 1 }
        XCTAssertEqual(perClass, [Int](repeating: 6000, count: 10))
        // The customary statistics are the training set's: normalised mean ≈ 0 and std ≈ 1
        // (0.2860/0.3530 are rounded to 4 digits, hence the 0.01 tolerance).
        var sum = 0.0, sumSq = 0.0
        train.images.withUnsafeBufferPointer { p in for v in p { sum += Double(v); sumSq += Double(v) * Double(v) } }
        let mean = sum / Double(train.images.count)
        let std = (sumSq / Double(train.images.count) - mean * mean).squareRoot()
        XCTAssertEqual(mean, 0, accuracy: 0.01)
        XCTAssertEqual(std, 1, accuracy: 0.01)

        // Batch assembly speed with crop + flip (printed, not asserted: it depends on the machine).
        let loader = try BatchLoader(dataset: train, batchSize: 128, seed: 1, augmentation: Augmentation(cropPadding: 2, horizontalFlip: true))
        let t0 = Date()
        var images = 0
        for _ in 0..<20 { images += loader.next()!.count }
        print("BatchLoader: \(Int(Double(images) / Date().timeIntervalSince(t0))) images/s (batch 128, crop 2 + flip, prefetch)")
    }
}
