// Image folders in torchvision's ImageFolder layout, streamed from disk:
//
//   DIR/train/<class>/<any sub-folders>/<image>.jpg|.jpeg|.png
//   DIR/val/<class>/...
//
// Classes are the sub-folders of train/, sorted by name; class i is label i. Files are found
// recursively and sorted by path; hidden files and other extensions are ignored. The kind of an
// image is read from its magic bytes. Nothing is decoded up front: `ImageFolderLoader` decodes and
// transforms each batch on a pool of threads. An empty class folder, a missing split, or a val/
// whose classes differ from train/'s are errors that name the folder.
import Foundation
import SGETensor

/// One split (train/ or val/) of an image folder, with the transform settings.
public struct ImageFolder: LabelledImages, Sendable {
    /// The split's folder (DIR/train or DIR/val).
    public var root: String
    public var paths: [String]
    public var labels: [Int32]
    public var classNames: [String]
    /// Output side: training crops and evaluation crops are `imageSize`×`imageSize`.
    public var imageSize: Int
    public var mean: [Float]
    public var std: [Float]
    /// Decoding threads of the loaders this folder makes.
    public var threads: Int
    /// Batches decoded ahead of the one the trainer is using.
    public var batchesAhead: Int

    public var count: Int { paths.count }
    public var channels: Int { 3 }
    public var height: Int { imageSize }
    public var width: Int { imageSize }
    public var source: String { "\(root) (image size \(imageSize))" }

    public static let extensions: Set<String> = ["jpg", "jpeg", "png"]

    /// The default loader thread count: one less than the cores, at least 1.
    public static var defaultThreads: Int { max(1, ProcessInfo.processInfo.activeProcessorCount - 1) }

    /// Scans `dir/split` (split "train" or "val"). `classes`, when given (train's classes), must
    /// equal the split's class folders.
    public init(dir: String, split: String, imageSize: Int = 224, classes: [String]? = nil,
                mean: [Float] = ImageTransform.imageNetMean, std: [Float] = ImageTransform.imageNetStd,
                threads: Int = ImageFolder.defaultThreads, batchesAhead: Int = 3) throws {
        guard imageSize >= 8, imageSize <= 4096 else {
            throw SGEError.invalidArgument("--image-size \(imageSize): must be in 8...4096")
        }
        guard threads >= 1 else { throw SGEError.invalidArgument("--loader-threads \(threads): must be at least 1") }
        guard mean.count == 3, std.count == 3, std.allSatisfy({ $0 > 0 }) else {
            throw SGEError.invalidArgument("image folder: need 3 mean and 3 positive std values, got \(mean) / \(std)")
        }
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw SGEError.io(path: dir, reason: "--data: no such folder (an image folder holds train/ and val/ with one folder per class)")
        }
        let root = (dir as NSString).appendingPathComponent(split)
        guard fm.fileExists(atPath: root, isDirectory: &isDir), isDir.boolValue else {
            throw SGEError.io(path: root, reason: "no \(split)/ folder: an image folder holds train/ and val/, each with one folder per class")
        }
        let entries: [String]
        do { entries = try fm.contentsOfDirectory(atPath: root) } catch {
            throw SGEError.io(path: root, reason: "cannot list the folder: \(error.localizedDescription)")
        }
        let found = entries.filter { name in
            var d: ObjCBool = false
            return !name.hasPrefix(".") && fm.fileExists(atPath: (root as NSString).appendingPathComponent(name), isDirectory: &d) && d.boolValue
        }.sorted()
        guard !found.isEmpty else { throw SGEError.invalidArgument("image folder \(root): no class folders in it") }
        if let classes, classes != found {
            let missing = classes.filter { !found.contains($0) }, extra = found.filter { !classes.contains($0) }
            throw SGEError.invalidArgument("image folder \(root): its classes differ from train/'s"
                + (missing.isEmpty ? "" : "; missing: \(missing.prefix(10).joined(separator: ", "))")
                + (extra.isEmpty ? "" : "; not in train/: \(extra.prefix(10).joined(separator: ", "))"))
        }
        var paths: [String] = [], labels: [Int32] = []
        for (label, name) in found.enumerated() {
            let classDir = (root as NSString).appendingPathComponent(name)
            let files = ImageFolder.imageFiles(in: classDir)
            guard !files.isEmpty else {
                throw SGEError.invalidArgument("image folder \(classDir): class '\(name)' has no .jpg, .jpeg or .png files")
            }
            paths += files
            labels += [Int32](repeating: Int32(label), count: files.count)
        }
        self.root = root
        self.paths = paths
        self.labels = labels
        self.classNames = found
        self.imageSize = imageSize
        self.mean = mean
        self.std = std
        self.threads = threads
        self.batchesAhead = max(1, batchesAhead)
    }

    /// The image files under `dir` (recursively), sorted by path.
    static func imageFiles(in dir: String) -> [String] {
        guard let walker = FileManager.default.enumerator(atPath: dir) else { return [] }
        var files: [String] = []
        while let relative = walker.nextObject() as? String {
            let name = (relative as NSString).lastPathComponent
            guard !name.hasPrefix("."), extensions.contains((name as NSString).pathExtension.lowercased()) else { continue }
            files.append((dir as NSString).appendingPathComponent(relative))
        }
        return files.sorted()
    }

    /// The first `n` images (all if n >= count).
    public func prefix(_ n: Int) -> ImageFolder { sliced(0..<max(0, n)) }

    /// Images `range` (clamped to 0..<count).
    public func sliced(_ range: Range<Int>) -> ImageFolder {
        let lo = max(0, min(range.lowerBound, count)), hi = max(lo, min(range.upperBound, count))
        var f = self
        f.paths = Array(paths[lo..<hi])
        f.labels = Array(labels[lo..<hi])
        return f
    }

    public func slice(_ range: Range<Int>) -> any LabelledImages { sliced(range) }

    /// Decodes image `i` and writes its 3×size×size normalised tensor into `dst`: RandomResizedCrop
    /// and a random flip drawn from `rng` when `augment`, else the evaluation centre crop.
    /// The crop is chosen from the header's size; a JPEG is then decoded at 1/2, 1/4 or 1/8 scale
    /// (libjpeg-turbo's DCT scaling) when the crop still spans at least size×size pixels at that
    /// scale, so only shrinking is ever left to the resampler.
    public func fill(_ i: Int, augment: Bool, rng: inout SeededRNG, into dst: UnsafeMutableBufferPointer<Float>) throws {
        guard let data = FileManager.default.contents(atPath: paths[i]) else {
            throw SGEError.io(path: paths[i], reason: "cannot read the image file")
        }
        let bytes = [UInt8](data)
        let (w, h, isJPEG) = try ImageCodec.header(bytes, path: paths[i])
        var rect = augment ? ImageTransform.randomResizedCrop(width: w, height: h, rng: &rng)
                           : ImageTransform.centreCrop(width: w, height: h, size: imageSize)
        var d = 1
        while isJPEG && d < 8 && min(rect.width, rect.height) / Double(2 * d) >= Double(imageSize) { d *= 2 }
        let image = try ImageCodec.decode(bytes, path: paths[i], denominator: d)
        if d > 1 {
            let (sx, sy) = (Double(image.width) / Double(w), Double(image.height) / Double(h))
            rect = CropRect(x: rect.x * sx, y: rect.y * sy, width: rect.width * sx, height: rect.height * sy)
        }
        let flip = augment && rng.next() & 1 == 1
        ImageTransform.resample(image, rect: rect, outWidth: imageSize, outHeight: imageSize, flip: flip,
                                mean: mean, std: std, into: dst)
    }

    /// Batches decoded on `threads` threads; the training transform when `training` and
    /// `augmentation` is not `.none`, else the evaluation transform.
    public func makeBatches(batchSize: Int, shuffle: Bool, seed: UInt64, augmentation: Augmentation, dropLast: Bool,
                            training: Bool) throws -> any BatchSource {
        try ImageFolderLoader(folder: self, batchSize: batchSize, shuffle: shuffle, seed: seed,
                              augment: training && !augmentation.isNone, dropLast: dropLast)
    }
}

/// Writes generated image folders (tests, benchmarks): smooth coloured patterns, one hue per class.
public enum ImageFolderGenerator {
    /// Writes DIR/<split>/class<k>/img<i>.<jpg|png> for each split: `perClass` images per class, of
    /// the given sizes in turn; every `pngEvery`-th image is a PNG (0: none), the rest JPEGs.
    public static func write(dir: String, splits: [String] = ["train", "val"], classes: Int, perClass: Int,
                             sizes: [(Int, Int)], pngEvery: Int = 0, seed: UInt64 = 1, quality: Int = 90) throws {
        var rng = SeededRNG(seed: seed)
        for split in splits {
            for k in 0..<classes {
                let classDir = "\(dir)/\(split)/class\(k)"
                do { try FileManager.default.createDirectory(atPath: classDir, withIntermediateDirectories: true) } catch {
                    throw SGEError.io(path: classDir, reason: "cannot create the folder: \(error.localizedDescription)")
                }
                for i in 0..<perClass {
                    let (w, h) = sizes[(k * perClass + i) % sizes.count]
                    let pixels = pattern(width: w, height: h, hue: k, of: classes, rng: &rng)
                    if pngEvery > 0 && i % pngEvery == pngEvery - 1 {
                        try PNG.write(path: "\(classDir)/img\(i).png", width: w, height: h, rgb: pixels)
                    } else {
                        try ImageCodec.writeJPEG(path: "\(classDir)/img\(i).jpg", width: w, height: h, pixels: pixels, quality: quality)
                    }
                }
            }
        }
    }

    /// A smooth pattern: the class's colour, a random gradient and low-frequency waves, plus noise.
    static func pattern(width: Int, height: Int, hue: Int, of classes: Int, rng: inout SeededRNG) -> [UInt8] {
        let base = [Float(hue * 255 / max(classes, 1)), Float((hue * 97) % 256), Float(255 - hue * 255 / max(classes, 1))]
        let (fx, fy, phase) = (rng.uniform(1, 4), rng.uniform(1, 4), rng.uniform(0, 6.28))
        var out = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                let wave = 40 * sin(fx * Float(x) / Float(width) * 6.28 + phase) * cos(fy * Float(y) / Float(height) * 6.28)
                for c in 0..<3 {
                    let v = base[c] * 0.7 + wave + Float(c * 20) + rng.uniform(-8, 8)
                    out[(y * width + x) * 3 + c] = UInt8(min(255, max(0, v)))
                }
            }
        }
        return out
    }
}
