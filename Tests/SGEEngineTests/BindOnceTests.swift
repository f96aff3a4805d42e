import Foundation
import SGEEngine
import SGEOpenCL
import SGETensor
import SGEDeviceTestSupport
import XCTest

/// Kernels bound once (OpenCLBackend.bindKernelsPerStep): inside a step every launch site keeps its
/// own kernel object and sets only the arguments that changed since that site's last launch.
final class BindOnceTests: XCTestCase {
    /// A step repeated with the same buffers sets no argument; the same sites with other buffers,
    /// scalars and sizes set exactly those, and every result is right (a skipped argument that had
    /// changed would write into the wrong tensor or with the wrong value).
    func testRepeatedStepSetsNoArgumentsAndChangesAreSet() throws {
        let device = try testDevice()
        XCTAssertTrue(device.bindKernelsPerStep)
        let recorder = LaunchRecorder()
        device.device.recorder = recorder
        defer { device.device.recorder = nil }
        let a = try device.tensor([1, 2, 3], [3]), b = try device.tensor([10, 20, 30], [3])
        let c = try device.tensor([5, 6, 7, 8, 9], [5])
        func step(_ x: Tensor, _ y: Tensor, _ alpha: Float) throws -> (sets: Int, launches: Int) {
            recorder.reset()
            device.beginStep("bind-once-test")
            defer { device.endStep() }
            try device.scale(x, alpha)        // site 0
            try device.axpby(alpha: 1, x, beta: 1, y)   // site 1: y = x + y
            return (recorder.argumentSets, recorder.launches)
        }
        let first = try step(a, b, 2)
        XCTAssertGreaterThan(first.sets, 0)
        XCTAssertEqual(try a.read(), [2, 4, 6])
        XCTAssertEqual(try b.read(), [12, 24, 36])
        let again = try step(a, b, 2)
        XCTAssertEqual(again.sets, 0, "a repeated step set \(again.sets) arguments")
        XCTAssertEqual(try a.read(), [4, 8, 12])
        XCTAssertEqual(try b.read(), [16, 32, 48])
        // Another scalar only: one argument at site 0.
        let scalar = try step(a, b, 0.5)
        XCTAssertEqual(scalar.sets, 1)
        XCTAssertEqual(try a.read(), [2, 4, 6])
        XCTAssertEqual(try b.read(), [18, 36, 54])
        // Other tensors (another size) at the same sites.
        let other = try step(c, c, 1)
        XCTAssertGreaterThan(other.sets, 0)
        XCTAssertEqual(try c.read(), [10, 12, 14, 16, 18])
        XCTAssertEqual(try a.read(), [2, 4, 6], "a tensor of an earlier step was written")
        // Outside a step every launch shares one kernel object per kernel: the same launches as above.
        recorder.reset()
        try device.scale(a, 1)
        XCTAssertEqual(recorder.launches, 1)
    }

    /// A step whose launches differ from the last one of its key (another kernel at a site) runs the
    /// new kernel at that site, and the step after it is right too.
    func testAChangedSequenceRebindsItsSites() throws {
        let device = try testDevice()
        let x = try device.tensor([1, -2, 3, -4], [4]), y = try device.tensor([1, 1, 1, 1], [4])
        device.beginStep("bind-once-sequence")
        try device.scale(x, 3)
        device.endStep()
        device.beginStep("bind-once-sequence")
        let r = try device.reluForward(x)   // site 0 is now ReLU
        try device.scale(y, 2)              // site 1 is new
        device.endStep()
        XCTAssertEqual(try r.read(), [3, 0, 9, 0])
        XCTAssertEqual(try y.read(), [2, 2, 2, 2])
        device.beginStep("bind-once-sequence")
        try device.scale(x, -1)
        device.endStep()
        XCTAssertEqual(try x.read(), [-3, 6, -9, 12])
    }
}
