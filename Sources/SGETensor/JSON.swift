import Foundation

/// JSON of `value` with sorted keys, as text: pretty-printed, or on one line (a JSON Lines record).
public func jsonText<T: Encodable>(_ value: T, pretty: Bool = true) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}

/// A number that JSON writes as null when it is NaN or ±Inf (JSON has neither; a diverged loss must
/// not make a report unwritable). null reads back as NaN.
public struct JSONNumber: Codable, Sendable, ExpressibleByFloatLiteral {
    public var value: Double
    public init(_ value: Double) { self.value = value }
    public init(floatLiteral value: Double) { self.value = value }
    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        value = c.decodeNil() ? .nan : try c.decode(Double.self)
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        if value.isFinite { try c.encode(value) } else { try c.encodeNil() }
    }
}
