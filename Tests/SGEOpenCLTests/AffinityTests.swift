import Foundation
import XCTest
@testable import SGEOpenCL

/// Device discovery asks PoCL to pin its worker threads (POCL_AFFINITY=1) unless the user chose.
final class AffinityTests: XCTestCase {
    func testPinningIsTheDefaultAndTheUsersChoiceWins() throws {
        let saved = ProcessInfo.processInfo.environment["POCL_AFFINITY"]
        defer {
            if let saved { setenv("POCL_AFFINITY", saved, 1) } else { unsetenv("POCL_AFFINITY") }
        }
        unsetenv("POCL_AFFINITY")
        Devices.pinCPUDriverThreads()
        XCTAssertEqual(String(cString: getenv("POCL_AFFINITY")), "1")
        setenv("POCL_AFFINITY", "0", 1)
        Devices.pinCPUDriverThreads()
        XCTAssertEqual(String(cString: getenv("POCL_AFFINITY")), "0", "a value the user exported must not be overwritten")
    }
}
