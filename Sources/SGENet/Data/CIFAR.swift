// CIFAR-10 binary version (cifar-10-batches-bin).
//
// Each file is a sequence of 3073-byte records: 1 label byte (0..9), then a 32×32 image as
// 1024 red, 1024 green, 1024 blue bytes, each plane row-major — i.e. already C×H×W. Training data
// is data_batch_1.bin ... data_batch_5.bin (10000 records each), test data is test_batch.bin.
// Files may be gzipped (detected by magic, like IDX files).
import Foundation
import SGETensor

/// Reader for the CIFAR-10 binary format.
public enum CIFAR {
    public static let channels = 3
    public static let height = 32
    public static let width = 32
    public static let imageBytes = 3 * 32 * 32
    /// One label byte plus one image.
    public static let recordBytes = 1 + imageBytes
    public static let classes = 10
    public static let trainFiles = (1...5).map { "data_batch_\($0).bin" }
    public static let testFiles = ["test_batch.bin"]
    public static let classNames = ["airplane", "automobile", "bird", "cat", "deer",
                                    "dog", "frog", "horse", "ship", "truck"]

    /// Reads one batch file: images as N×3×32×32 bytes and N labels. Validates that the size is a
    /// positive multiple of 3073 bytes and every label is below 10.
    public static func readBatch(path: String, hint: String = "") throws -> (images: [UInt8], labels: [UInt8]) {
        let bytes = try FileBytes.read(path: path, hint: hint)
        guard !bytes.isEmpty else { throw SGEError.corruptFile(path: path, reason: "empty file, expected \(recordBytes)-byte records") }
        guard bytes.count % recordBytes == 0 else {
            throw SGEError.corruptFile(path: path, reason: "size \(bytes.count) is not a multiple of the \(recordBytes)-byte record "
                                        + "(\(bytes.count / recordBytes) whole records and \(bytes.count % recordBytes) bytes left: truncated?)")
        }
        let n = bytes.count / recordBytes
        var images = [UInt8](repeating: 0, count: n * imageBytes)
        var labels = [UInt8](repeating: 0, count: n)
        try bytes.withUnsafeBufferPointer { src in
            try images.withUnsafeMutableBufferPointer { dst in
                for r in 0..<n {
                    let label = src[r * recordBytes]
                    guard Int(label) < classes else {
                        throw SGEError.corruptFile(path: path, reason: "record \(r) has label \(label), CIFAR-10 labels are 0..9")
                    }
                    labels[r] = label
                    let from = src.baseAddress! + r * recordBytes + 1
                    (dst.baseAddress! + r * imageBytes).update(from: from, count: imageBytes)
                }
            }
        }
        return (images, labels)
    }

    /// Class names from `batches.meta.txt` in `dir` (one per line) if present, else the standard ten.
    public static func classNames(dir: String) -> [String] {
        let path = (dir as NSString).appendingPathComponent("batches.meta.txt")
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return classNames }
        let names = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        return names.count == classes ? names : classNames
    }
}
