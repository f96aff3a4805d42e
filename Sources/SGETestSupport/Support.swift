import Foundation
import SGETensor
import XCTest

/// Whether device tests must run: `SGE_REQUIRE_DEVICE=1`, which .ci/run sets after installing PoCL,
/// so a broken OpenCL install fails CI instead of turning every device test into a skip.
public var deviceRequired: Bool { ProcessInfo.processInfo.environment["SGE_REQUIRE_DEVICE"] == "1" }

/// The error a test throws when what it needs (a device, the sge binary, test data) is missing: a
/// skip, or a failure naming `reason` when `deviceRequired`.
public func missingDevice(_ reason: String) -> Error {
    deviceRequired ? RequiredButMissing(description: "SGE_REQUIRE_DEVICE=1 but \(reason)") : XCTSkip(reason)
}

/// A test failure: something `SGE_REQUIRE_DEVICE=1` requires is missing.
public struct RequiredButMissing: Error, CustomStringConvertible {
    public var description: String
}

/// Compares element-wise with the shared rule (`Closeness.compare` in SGETensor): passes where both
/// values are finite and |a - r| <= atol + rtol*|r|; NaN/Inf on either side fail unless
/// `matchingNonFinite` is set and both sides hold the same non-finite value there.
public func compare(_ actual: [Float], _ reference: [Float], shape: Shape? = nil, atol: Double, rtol: Double,
                    matchingNonFinite: Bool = false) -> Closeness {
    Closeness.compare(actual, reference, shape: shape, atol: atol, rtol: rtol, matchingNonFinite: matchingNonFinite)
}

/// Fails the test unless every element is within `atol + rtol*|reference|`, after checking shapes.
/// NaN/Inf on either side fail unless `matchingNonFinite` is set and both sides agree there.
public func assertClose(_ actual: [Float], _ reference: [Float], shape: Shape? = nil, atol: Double, rtol: Double,
                        matchingNonFinite: Bool = false,
                        _ message: @autoclosure () -> String = "", file: StaticString = #filePath, line: UInt = #line) {
    let c = compare(actual, reference, shape: shape, atol: atol, rtol: rtol, matchingNonFinite: matchingNonFinite)
    if !c.passed { XCTFail("\(message()): \(c)", file: file, line: line) }
}

/// Central finite differences of a scalar function in Double: d f / d x_i ≈ (f(x+h e_i) - f(x-h e_i)) / 2h.
public func finiteDifference(_ x: [Double], h: Double = 1e-6, _ f: ([Double]) -> Double) -> [Double] {
    var g = [Double](repeating: 0, count: x.count)
    var xp = x
    for i in 0..<x.count {
        xp[i] = x[i] + h
        let fp = f(xp)
        xp[i] = x[i] - h
        let fm = f(xp)
        xp[i] = x[i]
        g[i] = (fp - fm) / (2 * h)
    }
    return g
}

/// The repository's test fixtures folder (Tests/Fixtures), found from this source file's path.
public func fixturesDirectory(file: String = #filePath) -> URL {
    URL(fileURLWithPath: file).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Tests/Fixtures")
}
