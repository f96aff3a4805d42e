import SGEEngine
import SGEOpenCL
import SGETensor
import SGEDeviceTestSupport
import XCTest

final class DeviceSelectionTests: XCTestCase {
    func testSpecsResolve() throws {
        let devices = try Devices.all()
        // No devices at all: the default is the reference backend.
        XCTAssertNil(try DeviceSelection.resolve(nil, devices: []).0)
        XCTAssertNil(try DeviceSelection.resolve(("reference", "--device reference"), devices: devices).0)
        XCTAssertThrowsError(try DeviceSelection.resolve(("99", "--device 99"), devices: devices)) { error in
            XCTAssertTrue("\(error)".contains("no device with index 99"), "\(error)")
        }
        XCTAssertThrowsError(try DeviceSelection.resolve(("no-such-gpu", "--device no-such-gpu"), devices: devices)) { error in
            XCTAssertTrue("\(error)".contains("no device matches 'no-such-gpu'"), "\(error)")
        }
        guard let first = devices.first else { throw missingDevice("no OpenCL device") }
        XCTAssertEqual(try DeviceSelection.resolve(("0", "--device 0"), devices: devices).0?.globalIndex, 0)
        let word = String(first.name.prefix(6)).lowercased()
        XCTAssertEqual(try DeviceSelection.resolve((word, "--device \(word)"), devices: devices).0?.globalIndex, first.globalIndex)
        // Default: the first GPU, else the first device.
        let expected = devices.first(where: { $0.isGPU }) ?? first
        XCTAssertEqual(try DeviceSelection.resolve(nil, devices: devices).0?.globalIndex, expected.globalIndex)
    }

    /// With SGE_REQUIRE_DEVICE=1 (CI) a missing device is a failure, not a skip; without it, a skip.
    func testRequiredDeviceTurnsSkipIntoFailure() throws {
        let saved = (ProcessInfo.processInfo.environment["SGE_REQUIRE_DEVICE"], ProcessInfo.processInfo.environment["SGE_TEST_DEVICE"])
        defer {
            if let v = saved.0 { setenv("SGE_REQUIRE_DEVICE", v, 1) } else { unsetenv("SGE_REQUIRE_DEVICE") }
            if let v = saved.1 { setenv("SGE_TEST_DEVICE", v, 1) } else { unsetenv("SGE_TEST_DEVICE") }
        }
        unsetenv("SGE_REQUIRE_DEVICE")
        XCTAssertTrue(missingDevice("x") is XCTSkip)
        setenv("SGE_REQUIRE_DEVICE", "1", 1)
        XCTAssertTrue(missingDevice("no device") is RequiredButMissing)
        XCTAssertTrue("\(missingDevice("no device"))".contains("no device"))
        // The reference backend selected for device tests is "no device" too.
        setenv("SGE_TEST_DEVICE", "reference", 1)
        XCTAssertThrowsError(try testDevice()) { XCTAssertTrue($0 is RequiredButMissing, "\($0)") }
    }
}
