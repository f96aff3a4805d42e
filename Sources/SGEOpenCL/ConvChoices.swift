import Foundation

/// One convolution shape's algorithm choice on one device: the path its forward and its backward
/// run with (names of `SGEEngine.ConvPath`), and the timings that chose them.
public struct ConvChoiceRecord: Codable, Equatable, Sendable {
    /// The forward's path, nil until the forward has been chosen.
    public var forward: String?
    /// The backward's path (grad input and grad weight together), nil until chosen.
    public var backward: String?
    /// Median milliseconds of each candidate as timed, keyed "forward <path>" / "backward <path>".
    public var timings: [String: Double]?

    public init(forward: String? = nil, backward: String? = nil, timings: [String: Double]? = nil) {
        (self.forward, self.backward, self.timings) = (forward, backward, timings)
    }
}

/// The convolution algorithms chosen on one device and driver, by timing the candidates the first
/// time each shape runs (like cuDNN's find mode or MIOpen's perf-db), stored beside the CLBlast
/// tuning as `<cache>/tuning/<hash>.conv.json` and reused. Keys are `ConvShapeKey` texts.
public struct ConvChoices: Codable, Equatable, Sendable {
    public var version = 1
    /// `DeviceInfo.cacheIdentity` of the device the choices were timed on.
    public var device: String
    public var choices: [String: ConvChoiceRecord]

    public init(device: String, choices: [String: ConvChoiceRecord] = [:]) { (self.device, self.choices) = (device, choices) }

    /// Where `info`'s device keeps its choices.
    public static func file(for info: DeviceInfo) -> URL {
        ProgramCache.cacheDirectory.appendingPathComponent("tuning/\(fnv1a(info.cacheIdentity)).conv.json")
    }

    /// The stored choices of `info`'s device (from `file`, default `file(for:)`), or nil when there are none. Throws when the file
    /// exists but cannot be read or decoded, or belongs to another device.
    public static func load(for info: DeviceInfo, from file: URL? = nil) throws -> ConvChoices? {
        let url = file ?? Self.file(for: info)
        guard let stored = try readTuningJSON(ConvChoices.self, from: url, what: "convolution choices") else { return nil }
        guard stored.device == info.cacheIdentity else {
            throw TuningError("convolution choices \(url.path) are for '\(stored.device)', not '\(info.cacheIdentity)'")
        }
        return stored
    }

    /// Writes these choices as `info`'s (to `file`, default `file(for:)`; atomically: temp file, then rename). Returns the path.
    @discardableResult
    public func save(for info: DeviceInfo, to file: URL? = nil) throws -> URL {
        let url = file ?? Self.file(for: info)
        try writeTuningJSON(self, to: url)
        return url
    }

    /// Deletes `info`'s stored choices; returns whether there were any.
    @discardableResult
    public static func reset(for info: DeviceInfo) throws -> Bool { try removeIfPresent(file(for: info)) }
}

/// The text that names one convolution shape in the choice tables: input N×C×H×W, weight
/// K×C×KH×KW, stride, padding and dilation, e.g. "128x16x28x28 16x16x3x3 s1x1 p1x1 d1x1".
public enum ConvShapeKey {
    public static func text(n: Int, c: Int, h: Int, w: Int, k: Int, kh: Int, kw: Int, strideH: Int, strideW: Int,
                            padH: Int, padW: Int, dilationH: Int, dilationW: Int) -> String {
        "\(n)x\(c)x\(h)x\(w) \(k)x\(c)x\(kh)x\(kw) s\(strideH)x\(strideW) p\(padH)x\(padW) d\(dilationH)x\(dilationW)"
    }
}
