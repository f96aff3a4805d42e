// What SGE does to a trained network: gate maps per layer and group, and gate statistics.
//
// For an SGE layer with G groups the gate map is s = sigmoid(a) (N, G, h, w) (see
// Reference.sgeForward for a), computed by `SGE.gate(_:)` on the layer's input captured with
// `SGEResNet.forwardCollectingSGEInputs` (eval mode: BatchNorm running statistics).
//
// Grids: one PNG per SGE layer; a row per image with the input image (pixels un-normalised as
// p = x·std + mean, clamped to [0, 1]) and, per group, the gate map upsampled to the image size
// with bilinear interpolation (align_corners = false, PyTorch's default: source coordinate
// (d + 0.5)·in/out - 0.5, clamped to [0, in-1]), coloured with viridis on the fixed scale
// s ∈ [0, 1] and blended over the image as (1 - α)·image + α·heat, α = `heatAlpha`.
//
// Statistics per (layer, group), over the N images and M = h·w positions:
//     mean   = (1/NM) Σ_{n,i} s_{n,i}
//     std    = sqrt( (1/NM) Σ_{n,i} (s_{n,i} - mean)² )           (population std over all gates)
//     spread = (1/N) Σ_n sqrt( (1/M) Σ_i (s_{n,i} - mean_n)² )   mean_n = (1/M) Σ_i s_{n,i}
// spread is how much the gate varies across positions within one image (0: a constant gate,
// i.e. SGE acts as a per-group scale); std also includes variation between images.
import Foundation
import SGENet
import SGEEngine
import SGETensor

/// One SGE layer's gate maps for a batch of images.
public struct GateMap: Sendable {
    /// The layer's `state_dict` prefix, e.g. "layer2.0.sge".
    public var layer: String
    /// [N, G, h, w].
    public var shape: Shape
    /// sigmoid(a), N×G×h×w.
    public var values: [Float]
    public var groups: Int { shape.c }
}

/// Gate statistics of one group of one SGE layer (see the file comment for the formulas).
public struct GateGroupStats: Codable, Sendable, Equatable {
    public var group: Int
    public var weight: Float
    public var bias: Float
    public var mean: Double
    public var std: Double
    public var spatialSpread: Double
    enum CodingKeys: String, CodingKey {
        case group, weight, bias, mean, std
        case spatialSpread = "spatial_spread"
    }
}

/// Gate statistics of one SGE layer.
public struct GateLayerStats: Codable, Sendable, Equatable {
    public var layer: String
    public var groups: Int
    /// Gate map size h×w.
    public var height: Int
    public var width: Int
    public var images: Int
    public var groupStats: [GateGroupStats]
    enum CodingKeys: String, CodingKey {
        case layer, groups, height, width, images
        case groupStats = "group_stats"
    }
}

/// Accumulates `GateLayerStats` over batches of gate maps (Double sums).
public struct GateStatsAccumulator: Sendable {
    public let layer: String
    public let groups: Int
    var sum: [Double], sumSquares: [Double], spreadSum: [Double]
    var count = 0
    var height = 0, width = 0

    public init(layer: String, groups: Int) {
        self.layer = layer
        self.groups = groups
        sum = [Double](repeating: 0, count: groups)
        sumSquares = sum
        spreadSum = sum
    }

    /// Adds a gate map [N, G, h, w].
    public mutating func add(_ map: GateMap) throws {
        guard map.shape.rank == 4, map.shape.c == groups, map.values.count == map.shape.count else {
            throw SGEError.shape("gate statistics \(layer): expected a [N, \(groups), h, w] gate map, got \(map.shape)")
        }
        let (n, m) = (map.shape.n, map.shape.h * map.shape.w)
        height = map.shape.h
        width = map.shape.w
        map.values.withUnsafeBufferPointer { v in
            for i in 0..<n {
                for g in 0..<groups {
                    let base = (i * groups + g) * m
                    var s = 0.0, ss = 0.0
                    for j in 0..<m { let x = Double(v[base + j]); s += x; ss += x * x }
                    sum[g] += s
                    sumSquares[g] += ss
                    let mean = s / Double(m)
                    var dev = 0.0
                    for j in 0..<m { let d = Double(v[base + j]) - mean; dev += d * d }
                    spreadSum[g] += (dev / Double(m)).squareRoot()
                }
            }
        }
        count += n
    }

    /// The statistics so far, with the layer's parameters for the table.
    public func result(weight: [Float], bias: [Float]) -> GateLayerStats {
        let positions = Double(max(count, 1) * max(height * width, 1))
        let stats = (0..<groups).map { g -> GateGroupStats in
            let mean = sum[g] / positions
            let variance = max(0, sumSquares[g] / positions - mean * mean)
            return GateGroupStats(group: g, weight: g < weight.count ? weight[g] : .nan, bias: g < bias.count ? bias[g] : .nan,
                                  mean: mean, std: variance.squareRoot(), spatialSpread: spreadSum[g] / Double(max(count, 1)))
        }
        return GateLayerStats(layer: layer, groups: groups, height: height, width: width, images: count, groupStats: stats)
    }
}

/// Gate maps, grids and statistics of a model's SGE layers.
public enum Visualize {
    /// Opacity of the heatmap over the image.
    public static let heatAlpha: Float = 0.6

    /// Loads a checkpoint written by `sge train` (or a PyTorch state_dict of the preset `model`,
    /// see `Weights`) into a new model on `backend`.
    public static func loadModel(checkpoint path: String, model: String? = nil, backend: any Backend) throws -> SGEResNet {
        try Weights(path: path, model: model).model(on: backend)
    }

    /// The gate map of every SGE layer for `images` ([N, C, H, W]), in network order.
    public static func gateMaps(model: SGEResNet, images: Tensor) throws -> [GateMap] {
        var maps: [GateMap] = []
        try model.forwardCollectingSGEInputs(images) { name, sge, input in
            let gate = try sge.gate(input)
            maps.append(GateMap(layer: name, shape: gate.shape, values: try gate.read()))
        }
        return maps
    }

    /// Bilinear resize of one h×w map to outH×outW (align_corners = false, edges clamped).
    public static func bilinear(_ map: ArraySlice<Float>, height h: Int, width w: Int, toHeight outH: Int, toWidth outW: Int) -> [Float] {
        let base = map.startIndex
        func coordinate(_ d: Int, _ inSize: Int, _ outSize: Int) -> (Int, Int, Float) {
            let src = min(max((Float(d) + 0.5) * Float(inSize) / Float(outSize) - 0.5, 0), Float(inSize - 1))
            let i0 = Int(src)
            return (i0, min(i0 + 1, inSize - 1), src - Float(i0))
        }
        var out = [Float](repeating: 0, count: outH * outW)
        for y in 0..<outH {
            let (y0, y1, fy) = coordinate(y, h, outH)
            for x in 0..<outW {
                let (x0, x1, fx) = coordinate(x, w, outW)
                let top = map[base + y0 * w + x0] * (1 - fx) + map[base + y0 * w + x1] * fx
                let bottom = map[base + y1 * w + x0] * (1 - fx) + map[base + y1 * w + x1] * fx
                out[y * outW + x] = top * (1 - fy) + bottom * fy
            }
        }
        return out
    }

    /// Image `index` of N×C×H×W normalised pixels as un-normalised RGB values in 0...255 (grey
    /// replicated to all three), H×W row-major.
    public static func imageRGB(_ images: [Float], index: Int, channels: Int, height: Int, width: Int,
                                mean: [Float], std: [Float]) -> [(Float, Float, Float)] {
        let plane = height * width
        let base = index * channels * plane
        return (0..<plane).map { i in
            func value(_ c: Int) -> Float {
                let cc = min(c, channels - 1)
                return min(max(images[base + cc * plane + i] * std[cc] + mean[cc], 0), 1) * 255
            }
            return (value(0), value(1), value(2))
        }
    }

    /// The blended colour of an image pixel (0...255 per channel) under gate value `s`.
    public static func blend(_ pixel: (Float, Float, Float), gate s: Float) -> RGB {
        let heat = Colormap.viridis(s)
        func mix(_ p: Float, _ h: UInt8) -> UInt8 { UInt8(min(255, max(0, ((1 - heatAlpha) * p + heatAlpha * Float(h)).rounded()))) }
        return RGB(mix(pixel.0, heat.0), mix(pixel.1, heat.1), mix(pixel.2, heat.2))
    }

    /// Where the cells of a grid lie (pixels), so tests can read them back.
    public struct GridLayout: Sendable {
        public var scale: Int
        public var cell: (width: Int, height: Int)
        public var gap: Int
        public var left: Int
        public var top: Int
        public var rowHeight: Int
        public var labelHeight: Int
        /// The canvas size (the width is a minimum: a long title or subtitle widens the canvas).
        public var size: (width: Int, height: Int)
        /// Top-left pixel of column `column` (0: input image, 1 + g: group g) of row `row`.
        public func origin(row: Int, column: Int) -> (x: Int, y: Int) {
            (left + column * (cell.width + gap), top + row * rowHeight + labelHeight)
        }
    }

    /// The layout of a grid of `rows` images of H×W with `groups` gate columns.
    public static func layout(rows: Int, groups: Int, height: Int, width: Int) -> GridLayout {
        let scale = max(1, 96 / max(height, width))
        let cell = (width * scale, height * scale)
        let gap = 6, left = 8
        let labelHeight = Canvas.textHeight() + 6
        let top = 8 + Canvas.textHeight(scale: 2) + 8 + Canvas.textHeight() + 6 + 3 * (Canvas.textHeight() + 3) + 6  // title, subtitle, column heads
        let rowHeight = labelHeight + cell.1 + gap
        let columns = groups + 1
        let legend = 24 + Canvas.textHeight() + 8
        var widthPx = left * 2 + columns * cell.0 + (columns - 1) * gap
        widthPx = max(widthPx, 460)
        return GridLayout(scale: scale, cell: (cell.0, cell.1), gap: gap, left: left, top: top, rowHeight: rowHeight,
                          labelHeight: labelHeight, size: (widthPx, top + rows * rowHeight + legend))
    }

    /// Draws one layer's grid: per image a row with the input and each group's gate heatmap.
    /// `images` are N×C×H×W normalised with `mean`/`std`; `captions` label each row.
    public static func renderGrid(_ map: GateMap, images: [Float], channels: Int, height: Int, width: Int,
                                  mean: [Float], std: [Float], captions: [String], subtitle: String = "",
                                  weight: [Float]? = nil, bias: [Float]? = nil, range: (lo: Float, hi: Float) = (0, 1)) throws -> Canvas {
        let (n, g) = (map.shape.n, map.groups)
        guard images.count >= n * channels * height * width, captions.count >= n else {
            throw SGEError.shape("visualize \(map.layer): \(n) gate maps but \(images.count / max(1, channels * height * width)) images and \(captions.count) captions")
        }
        let l = layout(rows: n, groups: g, height: height, width: width)
        let title = "\(map.layer): gate sigmoid(a), \(g) groups, map \(map.shape.h)x\(map.shape.w)"
        let canvasWidth = max(l.size.width, 2 * l.left + Canvas.textWidth(title, scale: 2), 2 * l.left + Canvas.textWidth(subtitle))
        try ImageLimits.check(width: canvasWidth, height: l.size.height, what: "visualize \(map.layer): \(n) images × \(g + 1) columns")
        var canvas = Canvas(width: canvasWidth, height: l.size.height)
        let grey = RGB(90, 90, 90)
        canvas.text(title, x: l.left, y: 8, .black, scale: 2)
        canvas.text(subtitle, x: l.left, y: 8 + Canvas.textHeight(scale: 2) + 8, grey)
        let headY = l.top - 3 * (Canvas.textHeight() + 3) - 3
        for column in 0...g {
            let x = l.origin(row: 0, column: column).x
            let label = column == 0 ? "input" : (l.cell.width >= Canvas.textWidth("group 00") ? "group \(column - 1)" : "g\(column - 1)")
            canvas.text(label, x: x, y: headY, .black)
            if column > 0, let weight, let bias, column - 1 < weight.count, column - 1 < bias.count {
                canvas.text(String(format: "w %.2f", weight[column - 1]), x: x, y: headY + Canvas.textHeight() + 3, grey)
                canvas.text(String(format: "b %.2f", bias[column - 1]), x: x, y: headY + 2 * (Canvas.textHeight() + 3), grey)
            }
        }
        let span = max(range.hi - range.lo, 1e-12)
        let plane = map.shape.h * map.shape.w
        for row in 0..<n {
            let pixels = imageRGB(images, index: row, channels: channels, height: height, width: width, mean: mean, std: std)
            let o = l.origin(row: row, column: 0)
            canvas.text(captions[row], x: o.x, y: o.y - l.labelHeight + 2, .black)
            for column in 0...g {
                let origin = l.origin(row: row, column: column)
                let gate: [Float]? = column == 0 ? nil
                    : bilinear(map.values[((row * g + column - 1) * plane)..<((row * g + column) * plane)], height: map.shape.h,
                               width: map.shape.w, toHeight: height, toWidth: width)
                for y in 0..<height {
                    for x in 0..<width {
                        let p = pixels[y * width + x]
                        let colour = gate.map { blend(p, gate: ($0[y * width + x] - range.lo) / span) }
                            ?? RGB(UInt8(p.0.rounded()), UInt8(p.1.rounded()), UInt8(p.2.rounded()))
                        canvas.fillRect(x: origin.x + x * l.scale, y: origin.y + y * l.scale, width: l.scale, height: l.scale, colour)
                    }
                }
            }
        }
        // Colour bar of the gate scale (fixed 0-1, or the stretched range).
        let barY = l.top + n * l.rowHeight + 4
        let barWidth = 256
        let fixed = range.lo == 0 && range.hi == 1
        let loText = String(format: fixed ? "%.0f" : "%.4f", range.lo), hiText = String(format: fixed ? "%.0f" : "%.4f", range.hi)
        let barX = l.left + Canvas.textWidth(loText) + 6
        for i in 0..<barWidth {
            let c = Colormap.viridis(Float(i) / Float(barWidth - 1))
            canvas.fillRect(x: barX + i, y: barY, width: 1, height: 14, RGB(c.0, c.1, c.2))
        }
        canvas.text(loText, x: l.left, y: barY + 4, .black)
        canvas.text(hiText, x: barX + barWidth + 6, y: barY + 4, .black)
        canvas.text(String(format: "gate value (heat over the image, opacity %.1f)", heatAlpha), x: l.left, y: barY + 20, grey)
        return canvas
    }

    /// Writes `OUT/<layer>.png` for every SGE layer, for the first `count` images of `data`;
    /// returns the paths written.
    @discardableResult
    /// With `stretch`, each layer's colour scale runs from its smallest to its largest gate value in
    /// these images instead of the fixed [0, 1] (small variations become visible; compare layers with care).
    public static func writeGrids(model: SGEResNet, backend: any Backend, data: Dataset, count: Int, outDir: String,
                                  stretch: Bool = false) throws -> [String] {
        guard model.config.useSGE, !model.sgeLayers.isEmpty else {
            throw SGEError.invalidArgument("visualize: the model has no SGE layers (trained with --no-sge)")
        }
        guard data.channels == model.config.inputChannels else {
            throw SGEError.invalidArgument("visualize: the model expects \(model.config.inputChannels)-channel images; the dataset has \(data.channels)")
        }
        let n = min(max(count, 1), data.count)
        guard n > 0 else { throw SGEError.invalidArgument("visualize: the dataset is empty") }
        // The grids' size is known before anything runs: refuse one over the image limits.
        let maxGroups = model.config.useSGE ? (model.config.groups.max() ?? 1) : 1
        let grid = layout(rows: n, groups: maxGroups, height: data.height, width: data.width)
        let rowsThatFit = max(1, (ImageLimits.maxSide - grid.top - (grid.size.height - grid.top - n * grid.rowHeight)) / grid.rowHeight)
        try ImageLimits.check(width: grid.size.width, height: grid.size.height,
                              what: "visualize: --images \(count) (use --images \(min(rowsThatFit, n)) or fewer)")
        try RunFolder.checkWritable(outDir)
        let subset = data.prefix(n)
        let x = try backend.tensor(subset.images, [n, data.channels, data.height, data.width], label: "images")
        let maps = try gateMaps(model: model, images: x)
        let logits = try model.forward(x, training: false).read()
        let k = model.config.classes
        let captions = (0..<n).map { i -> String in
            var best = 0
            for j in 1..<k where logits[i * k + j] > logits[i * k + best] { best = j }
            func name(_ c: Int) -> String { c < data.classNames.count ? data.classNames[c] : "\(c)" }
            return "#\(i) \(name(Int(subset.labels[i])))" + (best == Int(subset.labels[i]) ? "" : " (pred \(name(best)))")
        }
        var paths: [String] = []
        let params = Dictionary(uniqueKeysWithValues: model.sgeLayers)
        for map in maps {
            let sge = params[map.layer]
            let lo = map.values.min() ?? 0, hi = map.values.max() ?? 1
            let range: (lo: Float, hi: Float) = stretch && hi > lo ? (lo, hi) : (0, 1)
            let subtitle = "columns: input, then each group's gate s = sigmoid(w t + b)"
                + (stretch ? String(format: ", colour scale stretched to %.4f-%.4f", range.lo, range.hi) : " on a fixed 0-1 colour scale")
                + String(format: " (values %.4f-%.4f)", lo, hi) + (sge?.normalize == false ? ", no normalisation" : "")
            let canvas = try renderGrid(map, images: subset.images, channels: data.channels, height: data.height, width: data.width,
                                        mean: data.mean, std: data.std, captions: captions, subtitle: subtitle,
                                        weight: try sge?.weight.value.read(), bias: try sge?.bias.value.read(), range: range)
            let path = (outDir as NSString).appendingPathComponent(map.layer + ".png")
            try canvas.writePNG(path: path)
            paths.append(path)
        }
        return paths
    }

    /// Gate statistics of every SGE layer over the first `limit` images of `data` (all if nil).
    public static func gateStatistics(model: SGEResNet, backend: any Backend, data: Dataset, limit: Int? = nil,
                                      batchSize: Int = 250) throws -> [GateLayerStats] {
        let total = min(limit ?? data.count, data.count)
        guard total > 0 else { throw SGEError.invalidArgument("gate statistics: no images (dataset empty or --stats-images 0)") }
        guard batchSize > 0 else { throw SGEError.invalidArgument("gate statistics: batch size must be positive") }
        var accumulators: [String: GateStatsAccumulator] = [:]
        let size = data.imageSize
        var start = 0
        while start < total {
            let n = min(batchSize, total - start)
            let x = try backend.tensor(Array(data.images[(start * size)..<((start + n) * size)]), [n, data.channels, data.height, data.width],
                                       label: "images")
            for map in try gateMaps(model: model, images: x) {
                var acc = accumulators[map.layer] ?? GateStatsAccumulator(layer: map.layer, groups: map.groups)
                try acc.add(map)
                accumulators[map.layer] = acc
            }
            start += n
        }
        return try model.sgeLayers.compactMap { name, sge in
            try accumulators[name].map { $0.result(weight: try sge.weight.value.read(), bias: try sge.bias.value.read()) }
        }
    }

    /// The statistics as a markdown table (one row per layer and group).
    public static func statsMarkdown(_ stats: [GateLayerStats], title: String = "SGE gate statistics") -> String {
        var s = "# \(title)\n\n"
        if let first = stats.first { s += "Over \(first.images) images. " }
        s += "mean/std: over all positions and images; spatial spread: std over positions within an image, averaged over images.\n\n"
        s += "| layer | group | weight | bias | gate mean | gate std | spatial spread |\n|---|---:|---:|---:|---:|---:|---:|\n"
        for layer in stats {
            for g in layer.groupStats {
                s += String(format: "| %@ | %d | %.4f | %.4f | %.4f | %.4f | %.4f |\n", layer.layer, g.group, g.weight, g.bias,
                            g.mean, g.std, g.spatialSpread)
            }
        }
        return s
    }

    /// The statistics as pretty JSON (with `extra` top-level string fields such as the checkpoint).
    public static func statsJSON(_ stats: [GateLayerStats], extra: [String: String] = [:]) throws -> Data {
        let layers = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(stats))
        var object: [String: Any] = extra
        object["layers"] = layers
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }
}
