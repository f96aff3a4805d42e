// PNG files through libpng (the C shim's sge_png_write / sge_png_read), and the viridis colour map.
import CImage
import Foundation
import SGETensor

/// 8-bit PNG read/write through libpng.
public enum PNG {
    /// Writes an 8-bit image of `channels` (3: RGB, 4: RGBA) bytes per pixel, row-major from the top.
    /// Atomic: the image goes to a temporary file in the same directory, which is then renamed over
    /// `path`, so readers never see a half-written file.
    public static func write(path: String, width: Int, height: Int, rgb: [UInt8], channels: Int = 3) throws {
        guard width > 0, height > 0, width <= 1 << 20, height <= 1 << 20 else {
            throw SGEError.invalidArgument("PNG.write \(path): image size \(width)x\(height) must be positive (and at most 2^20)")
        }
        guard channels == 3 || channels == 4 else {
            throw SGEError.invalidArgument("PNG.write \(path): channels must be 3 (RGB) or 4 (RGBA), got \(channels)")
        }
        guard rgb.count == width * height * channels else {
            throw SGEError.shape("PNG.write \(path): \(rgb.count) bytes for a \(width)x\(height)x\(channels) image (need \(width * height * channels))")
        }
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        let temp = (dir as NSString).appendingPathComponent(".\(url.lastPathComponent).\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp")
        var message = [CChar](repeating: 0, count: 512)
        let status = message.withUnsafeMutableBufferPointer { m in
            sge_png_write(temp, Int32(width), Int32(height), Int32(channels), rgb, m.baseAddress, Int32(m.count))
        }
        guard status == 0 else {
            unlink(temp)
            throw SGEError.io(path: path, reason: "cannot write PNG: \(String(cString: message))")
        }
        guard rename(temp, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temp)
            throw SGEError.io(path: path, reason: "cannot rename the temporary PNG into place: \(reason)")
        }
    }

    /// Reads a PNG, expanded to 8 bits per channel (palette → RGB, grey stays 1 channel).
    public static func read(path: String) throws -> (width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        guard FileManager.default.fileExists(atPath: path) else { throw SGEError.io(path: path, reason: "no such file") }
        var w: Int32 = 0, h: Int32 = 0, c: Int32 = 0
        var message = [CChar](repeating: 0, count: 512)
        var status = message.withUnsafeMutableBufferPointer { m in
            sge_png_read(path, &w, &h, &c, nil, m.baseAddress, Int32(m.count))
        }
        guard status == 0 else { throw SGEError.corruptFile(path: path, reason: "not a readable PNG: \(String(cString: message))") }
        var pixels = [UInt8](repeating: 0, count: Int(w) * Int(h) * Int(c))
        status = message.withUnsafeMutableBufferPointer { m in
            pixels.withUnsafeMutableBufferPointer { p in
                sge_png_read(path, &w, &h, &c, p.baseAddress, m.baseAddress, Int32(m.count))
            }
        }
        guard status == 0 else { throw SGEError.corruptFile(path: path, reason: "not a readable PNG: \(String(cString: message))") }
        return (Int(w), Int(h), Int(c), pixels)
    }
}

/// Colour maps for heatmaps.
public enum Colormap {
    /// matplotlib's viridis sampled at t = 0, 1/8, ..., 1 (its 9-class hex values).
    static let viridisAnchors: [(Float, Float, Float)] = [
        (68, 1, 84), (72, 40, 120), (62, 73, 137), (49, 104, 142), (38, 130, 142),
        (31, 158, 137), (53, 183, 121), (110, 206, 88), (253, 231, 37),
    ]

    /// Viridis at t in [0, 1] (clamped; NaN maps to 0), linearly interpolated between anchors.
    public static func viridis(_ t: Float) -> (UInt8, UInt8, UInt8) {
        let t = t.isNaN ? 0 : min(max(t, 0), 1)
        let x = t * Float(viridisAnchors.count - 1)
        let i = min(Int(x), viridisAnchors.count - 2)
        let f = x - Float(i)
        let a = viridisAnchors[i], b = viridisAnchors[i + 1]
        func mix(_ u: Float, _ v: Float) -> UInt8 { UInt8(min(255, max(0, (u + (v - u) * f).rounded()))) }
        return (mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
    }
}
