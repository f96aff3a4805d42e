// In-memory image classification datasets, normalised for training.
//
// Pixels are bytes p in 0...255; each channel c is normalised as
//     x = (p / 255 - mean[c]) / std[c]
// with the dataset's customary statistics (Fashion-MNIST 0.2860/0.3530, MNIST 0.1307/0.3081,
// CIFAR-10 per channel (0.4914, 0.4822, 0.4465)/(0.2470, 0.2435, 0.2616)). Images are N×C×H×W.
import Foundation
import SGETensor

/// A labelled image dataset held in memory: N×C×H×W normalised floats and N labels.
public struct Dataset: Sendable {
    /// N×C×H×W, normalised with `mean`/`std`.
    public var images: [Float]
    public var labels: [Int32]
    public var count: Int
    public var channels: Int
    public var height: Int
    public var width: Int
    public var classNames: [String]
    /// Per-channel statistics used for normalisation (in 0...1 pixel units).
    public var mean: [Float]
    public var std: [Float]
    /// Where the data came from (directory or "synthetic"), for messages.
    public var source: String

    /// Floats per image (C·H·W).
    public var imageSize: Int { channels * height * width }
    public var classes: Int { classNames.count }

    /// Builds a dataset from normalised images; validates sizes and labels.
    public init(images: [Float], labels: [Int32], channels: Int, height: Int, width: Int, classNames: [String],
                mean: [Float], std: [Float], source: String = "memory") throws {
        guard channels > 0, height > 0, width > 0 else {
            throw SGEError.invalidArgument("Dataset: image shape \(channels)x\(height)x\(width) must be positive")
        }
        guard images.count == labels.count * channels * height * width else {
            throw SGEError.shape("Dataset: \(images.count) image values for \(labels.count) labels of \(channels)x\(height)x\(width)")
        }
        guard mean.count == channels, std.count == channels, std.allSatisfy({ $0 > 0 }) else {
            throw SGEError.invalidArgument("Dataset: need \(channels) mean and positive std values, got \(mean) / \(std)")
        }
        if let bad = labels.firstIndex(where: { $0 < 0 || Int($0) >= classNames.count }) {
            throw SGEError.invalidArgument("Dataset: label \(labels[bad]) at index \(bad) is outside 0..<\(classNames.count)")
        }
        self.images = images
        self.labels = labels
        self.count = labels.count
        self.channels = channels
        self.height = height
        self.width = width
        self.classNames = classNames
        self.mean = mean
        self.std = std
        self.source = source
    }

    /// Builds a dataset from raw bytes (N×C×H×W, 0...255), normalising with `mean`/`std`.
    public init(bytes: [UInt8], labels: [UInt8], channels: Int, height: Int, width: Int, classNames: [String],
                mean: [Float], std: [Float], source: String) throws {
        guard mean.count == channels, std.count == channels else {
            throw SGEError.invalidArgument("Dataset: need \(channels) mean/std values, got \(mean.count)/\(std.count)")
        }
        try self.init(images: Dataset.normalise(bytes, channels: channels, plane: height * width, mean: mean, std: std),
                      labels: labels.map { Int32($0) }, channels: channels, height: height, width: width,
                      classNames: classNames, mean: mean, std: std, source: source)
    }

    /// (p/255 - mean[c]) / std[c] for every byte of N×C×plane data.
    public static func normalise(_ bytes: [UInt8], channels: Int, plane: Int, mean: [Float], std: [Float]) -> [Float] {
        // A 256-entry table per channel: exact, and fast even in a debug build.
        let tables: [[Float]] = (0..<channels).map { c in
            (0..<256).map { Float((Double($0) / 255 - Double(mean[c])) / Double(std[c])) }
        }
        var out = [Float](repeating: 0, count: bytes.count)
        bytes.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                let perImage = channels * plane
                guard perImage > 0 else { return }
                for c in 0..<channels {
                    tables[c].withUnsafeBufferPointer { t in
                        var base = c * plane
                        while base < src.count {
                            for i in base..<(base + plane) { dst[i] = t[Int(src[i])] }
                            base += perImage
                        }
                    }
                }
            }
        }
        return out
    }

    /// The normalised value of a raw black pixel (byte 0) in each channel: -mean/std.
    public var blackValue: [Float] { (0..<channels).map { -mean[$0] / std[$0] } }

    /// The first `n` examples (all if n >= count).
    public func prefix(_ n: Int) -> Dataset { sliced(0..<max(0, n)) }

    /// Examples `range` (clamped to 0..<count).
    public func sliced(_ range: Range<Int>) -> Dataset {
        let lo = max(0, min(range.lowerBound, count)), hi = max(lo, min(range.upperBound, count))
        var d = self
        d.images = Array(images[(lo * imageSize)..<(hi * imageSize)])
        d.labels = Array(labels[lo..<hi])
        d.count = hi - lo
        return d
    }

    public func slice(_ range: Range<Int>) -> any LabelledImages { sliced(range) }

    // MARK: - Loaders

    public static let fashionMNISTDirectory = "/usr/share/datasets/fashion-mnist"
    public static let mnistDirectory = "/usr/share/datasets/mnist"
    public static let cifar10Directory = "/usr/share/datasets/cifar-10"

    public static let fashionMNISTClasses = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                             "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    public static let mnistClasses = (0...9).map(String.init)

    /// Fashion-MNIST: 60000 training or 10000 test images of 1×28×28, mean 0.2860, std 0.3530.
    public static func fashionMNIST(dir: String = fashionMNISTDirectory, train: Bool) throws -> Dataset {
        try idxDataset(dir: dir, train: train, classNames: fashionMNISTClasses, mean: 0.2860, std: 0.3530,
                       hint: "install dataset-fashion-mnist or pass --data DIR")
    }

    /// MNIST: 60000 training or 10000 test images of 1×28×28, mean 0.1307, std 0.3081.
    public static func mnist(dir: String = mnistDirectory, train: Bool) throws -> Dataset {
        try idxDataset(dir: dir, train: train, classNames: mnistClasses, mean: 0.1307, std: 0.3081,
                       hint: "download MNIST's four *-idx?-ubyte.gz files there or pass --data DIR")
    }

    /// CIFAR-10 (binary version): 50000 training or 10000 test images of 3×32×32. `dir` may be the
    /// `cifar-10-batches-bin` folder itself or its parent.
    public static func cifar10(dir: String = cifar10Directory, train: Bool) throws -> Dataset {
        let hint = "download cifar-10-binary.tar.gz and extract it there, or pass --data DIR"
        var root = dir
        let nested = (dir as NSString).appendingPathComponent("cifar-10-batches-bin")
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: nested, isDirectory: &isDir), isDir.boolValue { root = nested }
        var images = [UInt8](), labels = [UInt8]()
        for name in train ? CIFAR.trainFiles : CIFAR.testFiles {
            let batch = try CIFAR.readBatch(path: findFile(root, name, preferGzip: false), hint: hint)
            images += batch.images
            labels += batch.labels
        }
        return try Dataset(bytes: images, labels: labels, channels: 3, height: 32, width: 32,
                           classNames: CIFAR.classNames(dir: root),
                           mean: [0.4914, 0.4822, 0.4465], std: [0.2470, 0.2435, 0.2616], source: root)
    }

    static func idxDataset(dir: String, train: Bool, classNames: [String], mean: Float, std: Float, hint: String) throws -> Dataset {
        let prefix = train ? "train" : "t10k"
        let imagesPath = findFile(dir, "\(prefix)-images-idx3-ubyte")
        let labelsPath = findFile(dir, "\(prefix)-labels-idx1-ubyte")
        let (images, labels) = try IDX.readPair(images: imagesPath, labels: labelsPath, classes: classNames.count, hint: hint)
        return try Dataset(bytes: images.pixels, labels: labels, channels: 1, height: images.rows, width: images.cols,
                           classNames: classNames, mean: [mean], std: [std], source: dir)
    }

    /// `dir/name.gz` if it exists, else `dir/name`; if neither exists, the customary one of the two
    /// (`.gz` when `preferGzip`), so the "no such file" error names what to install.
    static func findFile(_ dir: String, _ name: String, preferGzip: Bool = true) -> String {
        let plain = (dir as NSString).appendingPathComponent(name)
        let gz = plain + ".gz"
        if FileManager.default.fileExists(atPath: gz) { return gz }
        if FileManager.default.fileExists(atPath: plain) { return plain }
        return preferGzip ? gz : plain
    }
}
