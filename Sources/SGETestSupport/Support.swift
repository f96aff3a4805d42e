import Foundation
import SGEEngine
import SGEOpenCL
import SGETensor
import XCTest

/// The OpenCL backend for device tests: `SGE_TEST_DEVICE` or the default device; nil (and the test
/// skips) when no OpenCL device exists.
public func testDevice() throws -> OpenCLBackend {
    let devices = (try? Devices.all()) ?? []
    guard !devices.isEmpty else { throw XCTSkip("no OpenCL device on this machine") }
    let spec = ProcessInfo.processInfo.environment["SGE_TEST_DEVICE"].map { ($0, "SGE_TEST_DEVICE=\($0)") }
    let (info, _) = try DeviceSelection.resolve(spec, devices: devices)
    guard let info else { throw XCTSkip("SGE_TEST_DEVICE selects the reference backend") }
    return try OpenCLBackend(info)
}

/// Result of comparing two arrays.
public struct Closeness: CustomStringConvertible {
    public var maxAbs: Double = 0
    public var maxRel: Double = 0
    public var worstIndex = -1
    public var failures = 0
    public var firstFailures: [String] = []
    public var description: String {
        String(format: "max abs %.3e, max rel %.3e", maxAbs, maxRel) + (failures > 0 ? ", \(failures) outside tolerance: " + firstFailures.joined(separator: "; ") : "")
    }
}

/// Compares element-wise: passes where |a - r| <= atol + rtol*|r|; NaN/Inf in `actual` always fail.
public func compare(_ actual: [Float], _ reference: [Float], shape: Shape? = nil, atol: Double, rtol: Double) -> Closeness {
    var c = Closeness()
    for i in 0..<min(actual.count, reference.count) {
        let a = Double(actual[i]), r = Double(reference[i])
        let diff = abs(a - r)
        let bad = !a.isFinite || diff > atol + rtol * abs(r)
        if diff > c.maxAbs || !a.isFinite { c.maxAbs = a.isFinite ? diff : .infinity; c.worstIndex = i }
        if abs(r) > 1e-12 { c.maxRel = max(c.maxRel, diff / abs(r)) }
        if bad {
            c.failures += 1
            if c.firstFailures.count < 5 {
                c.firstFailures.append("[\(indexString(i, shape))] got \(actual[i]) want \(reference[i])")
            }
        }
    }
    return c
}

func indexString(_ i: Int, _ shape: Shape?) -> String {
    guard let shape, shape.rank > 0 else { return "\(i)" }
    var rest = i
    var idx = [Int](repeating: 0, count: shape.rank)
    for d in stride(from: shape.rank - 1, through: 0, by: -1) {
        idx[d] = rest % shape[d]
        rest /= shape[d]
    }
    return idx.map(String.init).joined(separator: ",")
}

/// Fails the test unless every element is within `atol + rtol*|reference|`, after checking shapes.
public func assertClose(_ actual: [Float], _ reference: [Float], shape: Shape? = nil, atol: Double, rtol: Double,
                        _ message: @autoclosure () -> String = "", file: StaticString = #filePath, line: UInt = #line) {
    guard actual.count == reference.count else {
        XCTFail("\(message()): \(actual.count) values vs reference \(reference.count)", file: file, line: line)
        return
    }
    let c = compare(actual, reference, shape: shape, atol: atol, rtol: rtol)
    if c.failures > 0 { XCTFail("\(message()): \(c)", file: file, line: line) }
}

public func assertClose(_ actual: Tensor, _ reference: Tensor, atol: Double, rtol: Double,
                        _ message: @autoclosure () -> String = "", file: StaticString = #filePath, line: UInt = #line) throws {
    XCTAssertEqual(actual.shape, reference.shape, "\(message()): shape", file: file, line: line)
    assertClose(try actual.read(), try reference.read(), shape: actual.shape, atol: atol, rtol: rtol, message(), file: file, line: line)
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
