// Crop, resize, flip and normalise photographs into C×H×W float tensors.
//
// Training (torchvision's RandomResizedCrop(size, scale=(0.08, 1), ratio=(3/4, 4/3)) then
// RandomHorizontalFlip): up to 10 tries draw an area fraction s ~ U(0.08, 1) and a log-uniform aspect
// r ∈ [3/4, 4/3], w = round(sqrt(s·W·H·r)), h = round(sqrt(s·W·H/r)); the first (w, h) that fits
// is placed uniformly (left ∈ 0...W-w, top ∈ 0...H-h). If none fits, the centre crop of the whole
// image with its aspect clamped to [3/4, 4/3]. The crop is resized to size×size and flipped with
// probability 1/2.
//
// Evaluation (Resize(size·256/224) then CenterCrop(size)): the shorter side is scaled to
// R = ⌊size/0.875⌋ (256 for 224, 73 for 64), the longer to ⌊R·long/short⌋, and the centre
// size×size is taken (offsets round((R' - size)/2)). It is computed as one resample of the
// matching source rectangle, which gives the same filter taps as resizing and then cropping.
//
// Resampling is separable and follows PIL's "bilinear" resize (torchvision's antialias=True): an
// output pixel o along an axis has its centre at c = start + (o + ½)·scale in source coordinates,
// scale = source length / output length, and averages source pixels x with the triangle weight
//     w(x) = max(0, 1 - |x + ½ - c| / f),   f = max(scale, 1),
// normalised to sum 1 over the pixels inside the image. Enlarging (f = 1) is plain bilinear
// interpolation; shrinking widens the triangle to f source pixels, an area average that does not
// alias. Values stay floats in 0...255 until normalisation x = (v/255 - mean[c]) / std[c].
import Foundation
import SGETensor

/// A source rectangle in pixel units (left, top, width, height); fractional for evaluation crops.
public struct CropRect: Sendable, Equatable {
    public var x, y, width, height: Double
    public init(x: Double, y: Double, width: Double, height: Double) { (self.x, self.y, self.width, self.height) = (x, y, width, height) }
}

/// The crop, resize and normalisation maths of image-folder data (see the file comment).
public enum ImageTransform {
    /// ImageNet's per-channel mean and std (RGB, pixel units 0...1).
    public static let imageNetMean: [Float] = [0.485, 0.456, 0.406]
    public static let imageNetStd: [Float] = [0.229, 0.224, 0.225]

    /// RandomResizedCrop's rectangle for a `width`×`height` image (torchvision's algorithm).
    public static func randomResizedCrop(width: Int, height: Int, scale: (Double, Double) = (0.08, 1),
                                         ratio: (Double, Double) = (3.0 / 4, 4.0 / 3), rng: inout SeededRNG) -> CropRect {
        let area = Double(width * height)
        let logRatio = (log(ratio.0), log(ratio.1))
        for _ in 0..<10 {
            let target = area * (scale.0 + (scale.1 - scale.0) * Double(rng.uniform()))
            let aspect = exp(logRatio.0 + (logRatio.1 - logRatio.0) * Double(rng.uniform()))
            let w = Int((target * aspect).squareRoot().rounded())
            let h = Int((target / aspect).squareRoot().rounded())
            if w > 0, h > 0, w <= width, h <= height {
                let top = rng.int(height - h + 1)
                let left = rng.int(width - w + 1)
                return CropRect(x: Double(left), y: Double(top), width: Double(w), height: Double(h))
            }
        }
        let inRatio = Double(width) / Double(height)
        var w = width, h = height
        if inRatio < ratio.0 {
            h = min(height, Int((Double(w) / ratio.0).rounded()))
        } else if inRatio > ratio.1 {
            w = min(width, Int((Double(h) * ratio.1).rounded()))
        }
        return CropRect(x: Double((width - w) / 2), y: Double((height - h) / 2), width: Double(w), height: Double(h))
    }

    /// The source rectangle of Resize(⌊size/0.875⌋) + CenterCrop(size) for a `width`×`height` image.
    public static func centreCrop(width: Int, height: Int, size: Int) -> CropRect {
        let short = Int(Double(size) / 0.875)
        let (rw, rh) = width <= height ? (short, Int(Double(short) * Double(height) / Double(width)))
                                       : (Int(Double(short) * Double(width) / Double(height)), short)
        let left = Int((Double(rw - size) / 2).rounded()), top = Int((Double(rh - size) / 2).rounded())
        let sx = Double(width) / Double(rw), sy = Double(height) / Double(rh)
        return CropRect(x: Double(left) * sx, y: Double(top) * sy, width: Double(size) * sx, height: Double(size) * sy)
    }

    /// Resampling taps along one axis: output o reads source pixels first[o] ..< first[o] + count[o]
    /// with weights weights[o * stride ..< o * stride + count[o]] (summing to 1).
    struct Taps {
        var first: [Int]
        var count: [Int]
        var weights: [Float]
        var stride: Int
    }

    /// The taps of the triangle filter for `outSize` outputs over [start, start + length) of an axis
    /// of `inSize` pixels (see the file comment).
    static func taps(inSize: Int, start: Double, length: Double, outSize: Int) -> Taps {
        let scale = length / Double(outSize)
        let f = max(scale, 1)
        let stride = Int(ceil(f)) * 2 + 2
        var t = Taps(first: [Int](repeating: 0, count: outSize), count: [Int](repeating: 0, count: outSize),
                     weights: [Float](repeating: 0, count: outSize * stride), stride: stride)
        for o in 0..<outSize {
            let c = start + (Double(o) + 0.5) * scale
            var lo = max(Int(floor(c - f + 0.5)), 0)
            var hi = min(Int(floor(c + f + 0.5)), inSize)
            if hi - lo > stride { hi = lo + stride }
            var ws = [Double]()
            var sum = 0.0
            for x in lo..<max(hi, lo) {
                let w = max(0, 1 - abs(Double(x) + 0.5 - c) / f)
                ws.append(w)
                sum += w
            }
            if sum <= 0 {  // a rectangle outside the image: nearest pixel
                lo = min(max(Int(floor(c)), 0), inSize - 1)
                ws = [1]
                sum = 1
            }
            t.first[o] = lo
            t.count[o] = ws.count
            for (k, w) in ws.enumerated() { t.weights[o * stride + k] = Float(w / sum) }
        }
        return t
    }

    /// Resamples `rect` of `image` to `outWidth`×`outHeight`, mirrored left-right when `flip`, and
    /// writes (v/255 - mean[c]) / std[c] as C×H×W floats into `dst` (3·outWidth·outHeight values).
    public static func resample(_ image: RGBImage, rect: CropRect, outWidth: Int, outHeight: Int, flip: Bool,
                                mean: [Float], std: [Float], into dst: UnsafeMutableBufferPointer<Float>) {
        var tx = taps(inSize: image.width, start: rect.x, length: rect.width, outSize: outWidth)
        let ty = taps(inSize: image.height, start: rect.y, length: rect.height, outSize: outHeight)
        if flip {
            tx.first.reverse()
            tx.count.reverse()
            var w = tx.weights
            for o in 0..<outWidth {
                let from = (outWidth - 1 - o) * tx.stride
                for k in 0..<tx.stride { w[o * tx.stride + k] = tx.weights[from + k] }
            }
            tx.weights = w
        }
        // Horizontal pass over the rows the vertical taps read.
        let rowLo = ty.first.min() ?? 0
        let rowHi = zip(ty.first, ty.count).map { $0 + $1 }.max() ?? 0
        let rows = rowHi - rowLo
        var tmp = [Float](repeating: 0, count: max(rows, 0) * outWidth * 3)
        image.pixels.withUnsafeBufferPointer { src in
            tmp.withUnsafeMutableBufferPointer { out in
                tx.weights.withUnsafeBufferPointer { w in
                    for r in 0..<rows {
                        let row = (rowLo + r) * image.width * 3
                        for o in 0..<outWidth {
                            var a: Float = 0, b: Float = 0, c: Float = 0
                            let first = tx.first[o], base = o * tx.stride
                            for k in 0..<tx.count[o] {
                                let p = row + (first + k) * 3
                                let wk = w[base + k]
                                a += wk * Float(src[p]); b += wk * Float(src[p + 1]); c += wk * Float(src[p + 2])
                            }
                            let q = (r * outWidth + o) * 3
                            out[q] = a; out[q + 1] = b; out[q + 2] = c
                        }
                    }
                }
            }
        }
        // Vertical pass, normalising into C×H×W.
        let plane = outWidth * outHeight
        let scale = (0..<3).map { 1 / (255 * std[$0]) }
        let shift = (0..<3).map { -mean[$0] / std[$0] }
        tmp.withUnsafeBufferPointer { src in
            ty.weights.withUnsafeBufferPointer { w in
                for o in 0..<outHeight {
                    let first = ty.first[o] - rowLo, base = o * ty.stride
                    for x in 0..<outWidth {
                        var a: Float = 0, b: Float = 0, c: Float = 0
                        for k in 0..<ty.count[o] {
                            let p = ((first + k) * outWidth + x) * 3
                            let wk = w[base + k]
                            a += wk * src[p]; b += wk * src[p + 1]; c += wk * src[p + 2]
                        }
                        let i = o * outWidth + x
                        dst[i] = a * scale[0] + shift[0]
                        dst[plane + i] = b * scale[1] + shift[1]
                        dst[2 * plane + i] = c * scale[2] + shift[2]
                    }
                }
            }
        }
    }
}
