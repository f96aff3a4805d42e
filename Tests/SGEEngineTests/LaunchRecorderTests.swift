import Foundation
import SGEEngine
import SGEOpenCL
import SGETensor
import SGEDeviceTestSupport
import XCTest

/// LaunchRecorder's span of an op's kernels: what `sge bench` times its "event" rows with.
final class LaunchRecorderTests: XCTestCase {
    /// Two dependent kernels on an in-order queue: the span runs from the first one's start to the
    /// last one's end, so it is at least their summed device time (they do not overlap), and the
    /// recorder forgets them on reset. A CLBlast call in the span makes it nil (its event covers only
    /// its last kernel), as does a recorder that keeps no events or has seen nothing.
    func testSpanCoversEveryKernelAndRefusesCLBlast() throws {
        let device = try testDevice()
        let recorder = LaunchRecorder()
        device.device.recorder = recorder
        defer { device.device.recorder = nil }
        XCTAssertNil(try recorder.spanMilliseconds(), "nothing recorded")

        let n = 1 << 20
        let x = try device.tensor([Float](repeating: 1, count: n), [n]), y = try device.tensor([Float](repeating: 2, count: n), [n])
        try device.scale(x, 3)
        try device.axpby(alpha: 1, x, beta: 1, y)
        XCTAssertEqual(recorder.launches, 2)
        let span = try XCTUnwrap(try recorder.spanMilliseconds())
        let summed = try recorder.deviceMilliseconds().total
        XCTAssertGreaterThan(summed, 0)
        XCTAssertGreaterThanOrEqual(span, summed * (1 - 1e-9), "span \(span) ms < summed kernel time \(summed) ms")
        XCTAssertEqual(try y.read()[n - 1], 5)

        recorder.reset()
        XCTAssertNil(try recorder.spanMilliseconds(), "reset forgets the events")
        // A linear layer on CLBlast (CPU drivers run small ones on conv_cpu.cl's kernels by default).
        device.convWorkspace.cpuKernels = false
        defer { device.convWorkspace.cpuKernels = nil }
        let a = try device.tensor([1, 2, 3, 4, 5, 6], [2, 3]), w = try device.tensor([1, 0, 0, 0, 1, 0], [2, 3])
        let out = try device.linearForward(a, weight: w, bias: nil)
        try device.scale(out, 2)
        XCTAssertEqual(try out.read(), [2, 4, 8, 10])
        XCTAssertEqual(recorder.launchesByName.keys.filter { $0.hasPrefix("clblast:") }.count, 1)
        XCTAssertNil(try recorder.spanMilliseconds(), "a CLBlast call in the span")

        let quiet = LaunchRecorder(keepEvents: false)
        device.device.recorder = quiet
        try device.scale(x, 1)
        XCTAssertEqual(quiet.launches, 1)
        XCTAssertNil(try quiet.spanMilliseconds(), "no events kept")
    }
}
