// IDX files (MNIST, Fashion-MNIST), optionally gzipped.
//
// Layout (all integers big-endian):
//   magic    u32  = 0x0000_08_NN   (0x08: unsigned bytes; NN: number of dimensions)
//   dims     u32 × NN               (images: count, rows, cols; labels: count)
//   data     u8 × prod(dims)        (row-major)
// so a valid file is exactly 4 + 4·NN + prod(dims) bytes after decompression. A file whose first two
// bytes are 1f 8b is a gzip stream and is inflated with zlib first (the stream must end cleanly).
import CImage
import Foundation
import SGETensor

/// Readers for the IDX format used by MNIST and Fashion-MNIST.
public enum IDX {
    /// Magic number of an images file (unsigned bytes, 3 dimensions).
    public static let imagesMagic: UInt32 = 0x0000_0803
    /// Magic number of a labels file (unsigned bytes, 1 dimension).
    public static let labelsMagic: UInt32 = 0x0000_0801

    /// Images as stored: `count` images of `rows`×`cols` bytes, row-major.
    public struct Images: Sendable {
        public var count: Int
        public var rows: Int
        public var cols: Int
        public var pixels: [UInt8]
    }

    /// Reads an images file (`*-images-idx3-ubyte[.gz]`), validating magic, dimensions and exact size.
    public static func readImages(path: String, hint: String = "") throws -> Images {
        let bytes = try FileBytes.read(path: path, hint: hint)
        let (dims, offset) = try header(bytes, path: path, magic: imagesMagic, what: "images")
        guard dims[1] > 0, dims[2] > 0 else {
            throw SGEError.corruptFile(path: path, reason: "image size \(dims[1])x\(dims[2]) is empty")
        }
        try checkSize(bytes, path: path, offset: offset, dims: dims)
        return Images(count: dims[0], rows: dims[1], cols: dims[2], pixels: Array(bytes[offset...]))
    }

    /// Reads a labels file (`*-labels-idx1-ubyte[.gz]`), validating magic and exact size.
    public static func readLabels(path: String, hint: String = "") throws -> [UInt8] {
        let bytes = try FileBytes.read(path: path, hint: hint)
        let (dims, offset) = try header(bytes, path: path, magic: labelsMagic, what: "labels")
        try checkSize(bytes, path: path, offset: offset, dims: dims)
        return Array(bytes[offset...])
    }

    /// Reads an images file and its labels file, checking that the counts match and that every
    /// label is below `classes`.
    public static func readPair(images imagesPath: String, labels labelsPath: String, classes: Int = 10,
                                hint: String = "") throws -> (images: Images, labels: [UInt8]) {
        let images = try readImages(path: imagesPath, hint: hint)
        let labels = try readLabels(path: labelsPath, hint: hint)
        guard images.count == labels.count else {
            throw SGEError.corruptFile(path: labelsPath,
                                       reason: "count mismatch: \(labels.count) labels but \(imagesPath) has \(images.count) images")
        }
        if let bad = labels.firstIndex(where: { Int($0) >= classes }) {
            throw SGEError.corruptFile(path: labelsPath, reason: "label \(labels[bad]) at index \(bad) is not below \(classes) classes")
        }
        return (images, labels)
    }

    static func header(_ b: [UInt8], path: String, magic: UInt32, what: String) throws -> (dims: [Int], offset: Int) {
        guard b.count >= 4 else {
            throw SGEError.corruptFile(path: path, reason: "truncated: \(b.count) bytes, too short for an IDX header")
        }
        let m = be32(b, 0)
        guard m == magic else {
            let hint = m == (magic == imagesMagic ? labelsMagic : imagesMagic) ? " (this looks like the other file of the pair)" : ""
            throw SGEError.corruptFile(path: path, reason: String(format: "wrong magic 0x%08X for an IDX %@ file, expected 0x%08X", m, what, magic) + hint)
        }
        let n = Int(magic & 0xFF)
        let offset = 4 + 4 * n
        guard b.count >= offset else {
            throw SGEError.corruptFile(path: path, reason: "truncated header: \(b.count) bytes, need \(offset) for \(n) dimensions")
        }
        return ((0..<n).map { Int(be32(b, 4 + 4 * $0)) }, offset)
    }

    static func checkSize(_ b: [UInt8], path: String, offset: Int, dims: [Int]) throws {
        let (expected, overflow) = dims.reduce((1, false)) { acc, d in
            let (p, o) = acc.0.multipliedReportingOverflow(by: d)
            return (p, acc.1 || o)
        }
        guard !overflow, expected <= Int.max - offset else {
            throw SGEError.corruptFile(path: path, reason: "dimensions \(dims) are implausibly large")
        }
        let need = offset + expected
        if b.count < need {
            throw SGEError.corruptFile(path: path, reason: "truncated: \(b.count) bytes but dimensions \(dims) need \(need)")
        }
        if b.count > need {
            throw SGEError.corruptFile(path: path, reason: "\(b.count - need) trailing bytes after the \(need) that dimensions \(dims) describe")
        }
    }

    @inline(__always) static func be32(_ b: [UInt8], _ i: Int) -> UInt32 {
        UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
    }
}

/// Whole-file reads with transparent gzip decompression.
public enum FileBytes {
    /// The file's bytes, inflated if it starts with the gzip magic 1f 8b. A missing file is
    /// `SGEError.io` with `hint` appended; a damaged gzip stream is `SGEError.corruptFile`.
    public static func read(path: String, hint: String = "") throws -> [UInt8] {
        guard FileManager.default.fileExists(atPath: path) else {
            throw SGEError.io(path: path, reason: "no such file" + (hint.isEmpty ? "" : " (\(hint))"))
        }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw SGEError.io(path: path, reason: "cannot read: \(error.localizedDescription)")
        }
        let bytes = [UInt8](data)
        if bytes.count >= 2, bytes[0] == 0x1F, bytes[1] == 0x8B { return try Gzip.decompress(bytes, path: path) }
        return bytes
    }
}

/// gzip through zlib (via the CImage shim).
public enum Gzip {
    /// Inflates a gzip stream (one or more members); errors name `path` and what zlib reported.
    public static func decompress(_ input: [UInt8], path: String) throws -> [UInt8] {
        var output = [UInt8]()
        output.reserveCapacity(input.count * 4)
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        var stream = z_stream()
        // 15 + 16: a gzip wrapper with the largest window.
        guard inflateInit2_(&stream, 15 + 16, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw SGEError.io(path: path, reason: "zlib inflateInit failed")
        }
        defer { inflateEnd(&stream) }
        var input = input
        try input.withUnsafeMutableBufferPointer { inBuf in
            var consumed = 0
            while true {
                stream.next_in = inBuf.baseAddress! + consumed
                stream.avail_in = uInt(inBuf.count - consumed)
                var status: Int32 = Z_OK
                repeat {
                    let produced: Int = chunk.withUnsafeMutableBufferPointer { out in
                        stream.next_out = out.baseAddress
                        stream.avail_out = uInt(out.count)
                        status = inflate(&stream, Z_NO_FLUSH)
                        return out.count - Int(stream.avail_out)
                    }
                    output.append(contentsOf: chunk[0..<produced])
                    if status == Z_BUF_ERROR && stream.avail_in == 0 {
                        throw SGEError.corruptFile(path: path, reason: "truncated gzip stream (ended after \(output.count) uncompressed bytes)")
                    }
                    guard status == Z_OK || status == Z_STREAM_END else {
                        let message = stream.msg.map { String(cString: $0) } ?? "status \(status)"
                        throw SGEError.corruptFile(path: path, reason: "damaged gzip stream: \(message)")
                    }
                } while status != Z_STREAM_END
                consumed = inBuf.count - Int(stream.avail_in)
                // Another gzip member follows (concatenated .gz files are valid gzip).
                if consumed + 2 <= inBuf.count, inBuf[consumed] == 0x1F, inBuf[consumed + 1] == 0x8B {
                    inflateReset(&stream)
                    continue
                }
                if consumed < inBuf.count {
                    throw SGEError.corruptFile(path: path, reason: "\(inBuf.count - consumed) bytes of garbage after the gzip stream")
                }
                return
            }
        }
        return output
    }

    /// Deflates `input` into a single gzip member (used by tests and tools that write .gz files).
    public static func compress(_ input: [UInt8], level: Int32 = 6) throws -> [UInt8] {
        var stream = z_stream()
        guard deflateInit2_(&stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY,
                            zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw SGEError.invalidArgument("gzip: zlib deflateInit failed")
        }
        defer { deflateEnd(&stream) }
        var input = input
        var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(input.count))) + 32)
        let written: Int = input.withUnsafeMutableBufferPointer { inBuf in
            output.withUnsafeMutableBufferPointer { out in
                stream.next_in = inBuf.baseAddress
                stream.avail_in = uInt(inBuf.count)
                stream.next_out = out.baseAddress
                stream.avail_out = uInt(out.count)
                _ = deflate(&stream, Z_FINISH)
                return out.count - Int(stream.avail_out)
            }
        }
        guard stream.avail_in == 0 else { throw SGEError.invalidArgument("gzip: deflate did not finish") }
        return Array(output[0..<written])
    }
}
