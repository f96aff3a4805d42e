import Foundation
import SGEEngine
import SGEOpenCL
import SGETensor
@_exported import SGETestSupport
import XCTest

// Test support that needs a device: the OpenCL backend for device tests and the comparison of
// device tensors. SGETestSupport (comparison rule, finite differences, fixtures) has no OpenCL
// dependency, so the tensor and reference tests build without OpenCL.

/// The OpenCL backend for device tests: `SGE_TEST_DEVICE` or the default device. Where none exists
/// the test skips, or fails when `SGE_REQUIRE_DEVICE=1` (see `missingDevice`).
public func testDevice() throws -> OpenCLBackend {
    let devices = (try? Devices.all()) ?? []
    guard !devices.isEmpty else { throw missingDevice("no OpenCL device on this machine") }
    let spec = ProcessInfo.processInfo.environment["SGE_TEST_DEVICE"].map { ($0, "SGE_TEST_DEVICE=\($0)") }
    let (info, _) = try DeviceSelection.resolve(spec, devices: devices)
    guard let info else { throw missingDevice("SGE_TEST_DEVICE selects the reference backend") }
    return try OpenCLBackend(info)
}

/// `assertClose` on two backend tensors (read back to the host), after checking their shapes.
public func assertClose(_ actual: Tensor, _ reference: Tensor, atol: Double, rtol: Double,
                        _ message: @autoclosure () -> String = "", file: StaticString = #filePath, line: UInt = #line) throws {
    XCTAssertEqual(actual.shape, reference.shape, "\(message()): shape", file: file, line: line)
    assertClose(try actual.read(), try reference.read(), shape: actual.shape, atol: atol, rtol: rtol, message(), file: file, line: line)
}

