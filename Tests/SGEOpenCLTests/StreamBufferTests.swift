import SGEDeviceTestSupport
import XCTest
@testable import SGEOpenCL

/// The benchmarks' copy reference must not fit in the device's cache (else it measures the cache).
final class StreamBufferTests: XCTestCase {
    func testCopyBuffersAreFourTimesTheCacheWithinTheDevicesLimits() {
        let mib: UInt64 = 1 << 20, gib: UInt64 = 1 << 30
        // This project's VM as PoCL reports it: 260 MiB cache, 2 GiB max allocation, 5.2 GiB global.
        XCTAssertEqual(DeviceInfo.streamBufferBytes(cache: 260 * mib, maxAllocation: 2 * gib, globalMemory: 5 * gib + 200 * mib),
                       Int(1040 * mib))
        // No cache reported, or a small one: the 64 MiB floor.
        XCTAssertEqual(DeviceInfo.streamBufferBytes(cache: 0, maxAllocation: 2 * gib, globalMemory: 8 * gib), Int(64 * mib))
        XCTAssertEqual(DeviceInfo.streamBufferBytes(cache: 6 * mib, maxAllocation: 2 * gib, globalMemory: 8 * gib), Int(64 * mib))
        // A GPU's 50 MiB L2: 200 MiB.
        XCTAssertEqual(DeviceInfo.streamBufferBytes(cache: 50 * mib, maxAllocation: 20 * gib, globalMemory: 80 * gib), Int(200 * mib))
        // Limits win over the rule: max allocation, a quarter of global memory, 4 GiB; whole MiB.
        XCTAssertEqual(DeviceInfo.streamBufferBytes(cache: 260 * mib, maxAllocation: 512 * mib + 5, globalMemory: 8 * gib), Int(512 * mib))
        XCTAssertEqual(DeviceInfo.streamBufferBytes(cache: 260 * mib, maxAllocation: 2 * gib, globalMemory: 2 * gib), Int(512 * mib))
        XCTAssertEqual(DeviceInfo.streamBufferBytes(cache: 4 * gib, maxAllocation: 64 * gib, globalMemory: 256 * gib), Int(4 * gib))
    }

    func testTheDefaultDeviceReportsItsCache() throws {
        guard let info = try? Devices.all().first else { throw missingDevice("no OpenCL device") }
        XCTAssertGreaterThanOrEqual(info.streamBufferBytes, Int(64 << 20))
        XCTAssertLessThanOrEqual(UInt64(info.streamBufferBytes), info.maxAllocation)
    }
}
