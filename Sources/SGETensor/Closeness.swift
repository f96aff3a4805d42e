import Foundation

/// The one element-wise comparison rule of sge, shared by the test helpers (`assertClose`),
/// `sge validate` and `sge check-golden`.
///
/// Element i passes when both values are finite and
///
///     |actual[i] - expected[i]| <= atol + rtol·|expected[i]|.
///
/// NaN or ±Inf on *either* side fails (a reference holding NaN must not make `max` drop the
/// element, and an infinite reference must not make the tolerance infinite), unless the caller
/// passes `matchingNonFinite: true` and both sides hold the same non-finite value (NaN and NaN, or
/// the same infinity) at that index. A non-finite or negative tolerance never passes anything. Arrays
/// of different lengths fail as a whole.
public struct Closeness: Sendable, CustomStringConvertible {
    /// One failing element.
    public struct Failure: Sendable {
        public let index: Int
        public let actual: Float
        public let expected: Float
        /// atol + rtol·|expected| at this element.
        public let allowed: Double
    }

    /// Elements compared (the shorter length when the lengths differ).
    public var count = 0
    /// The two lengths when they differ (the comparison then fails).
    public var lengths: (actual: Int, expected: Int)?
    /// Largest |actual - expected| (infinity where an element is non-finite and not matched).
    public var maxAbs = 0.0
    /// Largest |actual - expected| / |expected| over elements with |expected| >= `relativeFloor`.
    public var maxRel = 0.0
    /// Largest |actual - expected| / (atol + rtol·|expected|): the share of the tolerance used (> 1 fails).
    public var worstRatio = 0.0
    /// Index of the element with `worstRatio` (-1 when nothing was compared).
    public var worstIndex = -1
    /// Number of failing elements, and how many of them failed for being non-finite.
    public var failures = 0
    public var nonFinite = 0
    /// The first few failing elements, in index order.
    public var firstFailures: [Failure] = []
    /// The shape used to print NCHW indices (optional).
    public var shape: Shape?

    public var passed: Bool { lengths == nil && failures == 0 }

    public var description: String {
        if let lengths { return "\(lengths.actual) values vs \(lengths.expected) expected" }
        var s = "max abs \(sci(maxAbs)), max rel \(sci(maxRel))"
        if failures > 0 {
            s += ", \(failures) outside tolerance" + (nonFinite > 0 ? " (\(nonFinite) non-finite)" : "") + ": "
            s += firstFailures.map { "[\(Closeness.index($0.index, shape))] got \($0.actual) want \($0.expected)" }.joined(separator: "; ")
        }
        return s
    }

    /// Compares `actual` with `expected` element by element under the rule above.
    /// - Parameters:
    ///   - matchingNonFinite: the caller expects non-finite values; the same one on both sides passes.
    ///   - relativeFloor: elements with a smaller |expected| are left out of `maxRel` (their ratio says nothing).
    ///   - keep: how many failing elements to keep in `firstFailures`.
    public static func compare(_ actual: [Float], _ expected: [Float], shape: Shape? = nil, atol: Double, rtol: Double,
                               matchingNonFinite: Bool = false, relativeFloor: Double = 1e-12, keep: Int = 5) -> Closeness {
        var c = Closeness()
        c.shape = shape
        if actual.count != expected.count { c.lengths = (actual.count, expected.count) }
        c.count = min(actual.count, expected.count)
        let toleranceValid = atol.isFinite && rtol.isFinite && atol >= 0 && rtol >= 0
        for i in 0..<c.count {
            let a = Double(actual[i]), r = Double(expected[i])
            let allowed = atol + rtol * abs(r)
            var diff: Double, ok: Bool
            if a.isFinite && r.isFinite {
                diff = abs(a - r)
                ok = toleranceValid && allowed.isFinite && diff <= allowed
            } else {
                let same = (a.isNaN && r.isNaN) || a == r
                ok = matchingNonFinite && same
                diff = ok ? 0 : .infinity
                if !ok { c.nonFinite += 1 }
            }
            let ratio: Double = ok && diff == 0 ? 0 : (toleranceValid && allowed > 0 && allowed.isFinite ? diff / allowed : .infinity)
            c.maxAbs = max(c.maxAbs, diff)
            if abs(r) >= relativeFloor, r.isFinite { c.maxRel = max(c.maxRel, diff / abs(r)) }
            if c.worstIndex < 0 || ratio > c.worstRatio {
                c.worstRatio = max(c.worstRatio, ratio)
                c.worstIndex = i
            }
            if !ok {
                c.failures += 1
                if c.firstFailures.count < keep {
                    c.firstFailures.append(Failure(index: i, actual: actual[i], expected: expected[i], allowed: allowed))
                }
            }
        }
        return c
    }

    /// NCHW-style index of flat element `i` of `shape` ("0,2,3,1"); the flat index without a shape.
    public static func index(_ i: Int, _ shape: Shape?) -> String {
        guard let shape, shape.rank > 0 else { return "\(i)" }
        var rest = i
        var idx = [Int](repeating: 0, count: shape.rank)
        for d in stride(from: shape.rank - 1, through: 0, by: -1) {
            idx[d] = rest % max(shape[d], 1)
            rest /= max(shape[d], 1)
        }
        return idx.map(String.init).joined(separator: ",")
    }
}

func sci(_ x: Double) -> String { String(format: "%.3e", x) }
