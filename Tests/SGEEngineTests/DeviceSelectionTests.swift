import SGEEngine
import SGEOpenCL
import SGETensor
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
        guard let first = devices.first else { throw XCTSkip("no OpenCL device") }
        XCTAssertEqual(try DeviceSelection.resolve(("0", "--device 0"), devices: devices).0?.globalIndex, 0)
        let word = String(first.name.prefix(6)).lowercased()
        XCTAssertEqual(try DeviceSelection.resolve((word, "--device \(word)"), devices: devices).0?.globalIndex, first.globalIndex)
        // Default: the first GPU, else the first device.
        let expected = devices.first(where: { $0.isGPU }) ?? first
        XCTAssertEqual(try DeviceSelection.resolve(nil, devices: devices).0?.globalIndex, expected.globalIndex)
    }
}
