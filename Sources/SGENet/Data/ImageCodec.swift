// JPEG and PNG decoding to 8-bit RGB (libjpeg-turbo and libpng through the CImage shim), and JPEG
// encoding for generated test folders.
import CImage
import Foundation
import SGETensor

/// An 8-bit RGB image, row-major from the top, 3 bytes per pixel (R, G, B).
public struct RGBImage: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        self.width = width
        self.height = height
        self.pixels = pixels
    }
}

/// Decoding and encoding of photographs.
public enum ImageCodec {
    /// The largest side accepted (a corrupt header may claim a huge size; this keeps one bad file
    /// from allocating gigabytes).
    public static let maxSide = 1 << 15

    /// Decodes a JPEG or PNG (chosen by its magic bytes) to RGB8. Grey JPEGs are expanded to RGB;
    /// PNG grey, palette, alpha (composited on black) and 16-bit images are converted to RGB8.
    /// Anything unreadable is `SGEError.corruptFile` naming `path`.
    /// With `denominator` 2, 4 or 8 a JPEG is decoded at that fraction of its size (libjpeg-turbo's
    /// DCT scaling, ⌈side/denominator⌉, much faster than decoding in full); PNGs always in full.
    public static func decode(_ bytes: [UInt8], path: String, denominator: Int = 1) throws -> RGBImage {
        var (w, h, isJPEG) = try header(bytes, path: path)
        if isJPEG && [2, 4, 8].contains(denominator) {
            w = (w + denominator - 1) / denominator
            h = (h + denominator - 1) / denominator
        }
        var message = [CChar](repeating: 0, count: 256)
        var pixels = [UInt8](repeating: 0, count: w * h * 3)
        let status = bytes.withUnsafeBufferPointer { b in
            message.withUnsafeMutableBufferPointer { m in
                pixels.withUnsafeMutableBufferPointer { p in
                    sge_image_decode_rgb(b.baseAddress, b.count, Int32(w), Int32(h), p.baseAddress, m.baseAddress, Int32(m.count))
                }
            }
        }
        guard status == 0 else { throw SGEError.corruptFile(path: path, reason: String(cString: message)) }
        return RGBImage(width: w, height: h, pixels: pixels)
    }

    /// The size of a JPEG or PNG from its header, and whether it is a JPEG.
    public static func header(_ bytes: [UInt8], path: String) throws -> (width: Int, height: Int, isJPEG: Bool) {
        var w: Int32 = 0, h: Int32 = 0, kind: Int32 = 0
        var message = [CChar](repeating: 0, count: 256)
        let info = bytes.withUnsafeBufferPointer { b in
            message.withUnsafeMutableBufferPointer { m in
                sge_image_info(b.baseAddress, b.count, &w, &h, &kind, m.baseAddress, Int32(m.count))
            }
        }
        guard info == 0 else { throw SGEError.corruptFile(path: path, reason: String(cString: message)) }
        guard w > 0, h > 0, Int(w) <= maxSide, Int(h) <= maxSide else {
            throw SGEError.corruptFile(path: path, reason: "implausible image size \(w)x\(h)")
        }
        return (Int(w), Int(h), kind == 1)
    }

    /// Reads and decodes a file; a missing or unreadable file is `SGEError.io`.
    public static func read(path: String) throws -> RGBImage {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SGEError.io(path: path, reason: "cannot read the image file")
        }
        return try decode([UInt8](data), path: path)
    }

    /// Encodes RGB (`channels` 3) or grey (1) bytes as a JPEG of `quality` 1...100.
    public static func encodeJPEG(width: Int, height: Int, pixels: [UInt8], channels: Int = 3, quality: Int = 90) throws -> [UInt8] {
        guard width > 0, height > 0, channels == 1 || channels == 3, pixels.count == width * height * channels else {
            throw SGEError.shape("encodeJPEG: \(pixels.count) bytes for a \(width)x\(height)x\(channels) image")
        }
        var out: UnsafeMutablePointer<UInt8>? = nil
        var size: UInt = 0
        var message = [CChar](repeating: 0, count: 256)
        let status = message.withUnsafeMutableBufferPointer { m in
            sge_jpeg_encode(pixels, Int32(width), Int32(height), Int32(channels), Int32(min(max(quality, 1), 100)),
                            &out, &size, m.baseAddress, Int32(m.count))
        }
        defer { if let out { sge_jpeg_free(out) } }
        guard status == 0, let out else { throw SGEError.invalidArgument("encodeJPEG: \(String(cString: message))") }
        return Array(UnsafeBufferPointer(start: out, count: Int(size)))
    }

    /// Writes a JPEG file atomically (temporary file, then rename).
    public static func writeJPEG(path: String, width: Int, height: Int, pixels: [UInt8], channels: Int = 3, quality: Int = 90) throws {
        let bytes = try encodeJPEG(width: width, height: height, pixels: pixels, channels: channels, quality: quality)
        do {
            try Data(bytes).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw SGEError.io(path: path, reason: "cannot write JPEG: \(error.localizedDescription)")
        }
    }
}
