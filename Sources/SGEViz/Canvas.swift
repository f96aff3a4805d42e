// A tiny RGB raster for plots: pixels, rectangles, thick lines (Bresenham) and text in a built-in
// 5×7 bitmap font (upper-case letters, digits and a little punctuation; lower case is drawn as
// upper case). Coordinates are pixels from the top-left; everything is clipped to the canvas.
import Foundation
import SGENet

/// An 8-bit RGB colour.
public struct RGB: Sendable, Equatable {
    public var r: UInt8, g: UInt8, b: UInt8
    public init(_ r: UInt8, _ g: UInt8, _ b: UInt8) { (self.r, self.g, self.b) = (r, g, b) }
    public static let white = RGB(255, 255, 255)
    public static let black = RGB(0, 0, 0)
}

/// An RGB image being drawn on.
public struct Canvas: Sendable {
    public let width: Int
    public let height: Int
    /// Row-major RGB bytes, top row first.
    public var pixels: [UInt8]

    public init(width: Int, height: Int, background: RGB = .white) {
        self.width = max(1, width)
        self.height = max(1, height)
        pixels = [UInt8](repeating: 0, count: self.width * self.height * 3)
        fillRect(x: 0, y: 0, width: self.width, height: self.height, background)
    }

    public func pixel(x: Int, y: Int) -> RGB {
        let i = (y * width + x) * 3
        return RGB(pixels[i], pixels[i + 1], pixels[i + 2])
    }

    public mutating func set(x: Int, y: Int, _ c: RGB) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        let i = (y * width + x) * 3
        pixels[i] = c.r
        pixels[i + 1] = c.g
        pixels[i + 2] = c.b
    }

    public mutating func fillRect(x: Int, y: Int, width w: Int, height h: Int, _ c: RGB) {
        for yy in max(0, y)..<max(max(0, y), min(height, y + h)) {
            for xx in max(0, x)..<max(max(0, x), min(width, x + w)) { set(x: xx, y: yy, c) }
        }
    }

    /// A line of the given thickness from (x0, y0) to (x1, y1).
    public mutating func line(_ x0: Int, _ y0: Int, _ x1: Int, _ y1: Int, _ c: RGB, thickness: Int = 1) {
        var (x, y) = (x0, y0)
        let dx = abs(x1 - x0), dy = -abs(y1 - y0)
        let sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1
        var err = dx + dy
        let lo = -(thickness - 1) / 2
        while true {
            if thickness <= 1 { set(x: x, y: y, c) } else { fillRect(x: x + lo, y: y + lo, width: thickness, height: thickness, c) }
            if x == x1 && y == y1 { break }
            let e2 = 2 * err
            if e2 >= dy { err += dy; x += sx }
            if e2 <= dx { err += dx; y += sy }
        }
    }

    /// Width in pixels of `text` at `scale` (6 pixels per character, less the trailing gap).
    public static func textWidth(_ text: String, scale: Int = 1) -> Int { max(0, text.count * 6 - 1) * scale }
    /// Height in pixels of a line of text at `scale`.
    public static func textHeight(scale: Int = 1) -> Int { 7 * scale }

    /// Draws `text` with its top-left corner at (x, y); unknown characters are drawn as '?'.
    public mutating func text(_ text: String, x: Int, y: Int, _ c: RGB, scale: Int = 1) {
        var cx = x
        for ch in text.uppercased() {
            let rows = Canvas.glyphs[ch] ?? Canvas.glyphs["?"]!
            for (r, bits) in rows.enumerated() {
                for col in 0..<5 where bits & (0x10 >> col) != 0 {
                    fillRect(x: cx + col * scale, y: y + r * scale, width: scale, height: scale, c)
                }
            }
            cx += 6 * scale
        }
    }

    /// Draws `text` rotated 90° counter-clockwise (reading bottom to top), its bounding box's
    /// top-left at (x, y).
    public mutating func verticalText(_ text: String, x: Int, y: Int, _ c: RGB, scale: Int = 1) {
        let length = Canvas.textWidth(text, scale: scale)
        var offset = 0
        for ch in text.uppercased() {
            let rows = Canvas.glyphs[ch] ?? Canvas.glyphs["?"]!
            for (r, bits) in rows.enumerated() {
                for col in 0..<5 where bits & (0x10 >> col) != 0 {
                    // (col, r) in the glyph → (r, -col) rotated.
                    fillRect(x: x + r * scale, y: y + length - 1 - (offset + col) * scale - (scale - 1), width: scale, height: scale, c)
                }
            }
            offset += 6
        }
    }

    /// Writes the canvas as an RGB PNG (atomically).
    public func writePNG(path: String) throws {
        try PNG.write(path: path, width: width, height: height, rgb: pixels)
    }

    /// 5×7 glyphs: 7 rows, bit 4 is the leftmost column.
    static let glyphs: [Character: [UInt8]] = {
        let patterns: [Character: String] = [
            "0": ".###.|#...#|#..##|#.#.#|##..#|#...#|.###.", "1": "..#..|.##..|..#..|..#..|..#..|..#..|.###.",
            "2": ".###.|#...#|....#|...#.|..#..|.#...|#####", "3": "#####|...#.|..#..|...#.|....#|#...#|.###.",
            "4": "...#.|..##.|.#.#.|#..#.|#####|...#.|...#.", "5": "#####|#....|####.|....#|....#|#...#|.###.",
            "6": "..##.|.#...|#....|####.|#...#|#...#|.###.", "7": "#####|....#|...#.|..#..|.#...|.#...|.#...",
            "8": ".###.|#...#|#...#|.###.|#...#|#...#|.###.", "9": ".###.|#...#|#...#|.####|....#|...#.|.##..",
            "A": ".###.|#...#|#...#|#####|#...#|#...#|#...#", "B": "####.|#...#|#...#|####.|#...#|#...#|####.",
            "C": ".###.|#...#|#....|#....|#....|#...#|.###.", "D": "###..|#..#.|#...#|#...#|#...#|#..#.|###..",
            "E": "#####|#....|#....|####.|#....|#....|#####", "F": "#####|#....|#....|####.|#....|#....|#....",
            "G": ".###.|#...#|#....|#.###|#...#|#...#|.####", "H": "#...#|#...#|#...#|#####|#...#|#...#|#...#",
            "I": ".###.|..#..|..#..|..#..|..#..|..#..|.###.", "J": "..###|...#.|...#.|...#.|...#.|#..#.|.##..",
            "K": "#...#|#..#.|#.#..|##...|#.#..|#..#.|#...#", "L": "#....|#....|#....|#....|#....|#....|#####",
            "M": "#...#|##.##|#.#.#|#.#.#|#...#|#...#|#...#", "N": "#...#|#...#|##..#|#.#.#|#..##|#...#|#...#",
            "O": ".###.|#...#|#...#|#...#|#...#|#...#|.###.", "P": "####.|#...#|#...#|####.|#....|#....|#....",
            "Q": ".###.|#...#|#...#|#...#|#.#.#|#..#.|.##.#", "R": "####.|#...#|#...#|####.|#.#..|#..#.|#...#",
            "S": ".####|#....|#....|.###.|....#|....#|####.", "T": "#####|..#..|..#..|..#..|..#..|..#..|..#..",
            "U": "#...#|#...#|#...#|#...#|#...#|#...#|.###.", "V": "#...#|#...#|#...#|#...#|#...#|.#.#.|..#..",
            "W": "#...#|#...#|#...#|#.#.#|#.#.#|#.#.#|.#.#.", "X": "#...#|#...#|.#.#.|..#..|.#.#.|#...#|#...#",
            "Y": "#...#|#...#|.#.#.|..#..|..#..|..#..|..#..", "Z": "#####|....#|...#.|..#..|.#...|#....|#####",
            ".": ".....|.....|.....|.....|.....|.##..|.##..", ",": ".....|.....|.....|.....|.##..|..#..|.#...",
            "-": ".....|.....|.....|.###.|.....|.....|.....", "+": ".....|..#..|..#..|#####|..#..|..#..|.....",
            "_": ".....|.....|.....|.....|.....|.....|#####", ":": ".....|.##..|.##..|.....|.##..|.##..|.....",
            "%": "##...|##..#|...#.|..#..|.#...|#..##|...##", "/": ".....|....#|...#.|..#..|.#...|#....|.....",
            "(": "...#.|..#..|.#...|.#...|.#...|..#..|...#.", ")": ".#...|..#..|...#.|...#.|...#.|..#..|.#...",
            "=": ".....|.....|#####|.....|#####|.....|.....", "?": ".###.|#...#|....#|...#.|..#..|.....|..#..",
            "×": ".....|#...#|.#.#.|..#..|.#.#.|#...#|.....", " ": ".....|.....|.....|.....|.....|.....|.....",
            "'": "..#..|..#..|.#...|.....|.....|.....|.....", "#": ".#.#.|.#.#.|#####|.#.#.|#####|.#.#.|.#.#.",
            "[": ".###.|.#...|.#...|.#...|.#...|.#...|.###.", "]": ".###.|...#.|...#.|...#.|...#.|...#.|.###.",
        ]
        return patterns.mapValues { p in
            p.split(separator: "|").map { row in row.reduce(UInt8(0)) { $0 << 1 | ($1 == "#" ? 1 : 0) } }
        }
    }()
}
