import SGEEngine
import SGETensor
import SGEDeviceTestSupport
import XCTest

final class ResidencyTests: XCTestCase {
    func testCopiesHappenOnlyWhenTheOtherSideNeedsThem() throws {
        let backend = try testDevice()
        let t = try backend.tensor([1, 2, 3, 4, 5], [5], label: "t")
        XCTAssertEqual(t.residency, .host)
        XCTAssertEqual(t.uploads, 0, "creating a tensor does not upload")
        _ = try t.deviceBuffer()
        XCTAssertEqual(t.uploads, 1)
        XCTAssertEqual(t.residency, [.host, .device])
        _ = try t.deviceBuffer()
        XCTAssertEqual(t.uploads, 1, "no second upload while the device copy is valid")
        XCTAssertEqual(try t.read(), [1, 2, 3, 4, 5])
        XCTAssertEqual(t.downloads, 0, "no download while the host copy is valid")

        // A kernel writes on the device: the host copy is stale, reading downloads once.
        try backend.scale(t, 2)
        XCTAssertEqual(t.residency, .device)
        XCTAssertEqual(try t.read(), [2, 4, 6, 8, 10])
        XCTAssertEqual(t.downloads, 1)
        _ = try t.read()
        XCTAssertEqual(t.downloads, 1)

        // A host write makes the device copy stale: the next kernel uploads again.
        try t.write([1, 1, 1, 1, 1])
        XCTAssertEqual(t.residency, .host)
        try backend.scale(t, 3)
        XCTAssertEqual(t.uploads, 2)
        XCTAssertEqual(try t.read(), [3, 3, 3, 3, 3])
    }

    func testKernelOutputsNeverUploadAndHostEditsAfterAsyncUploadAreSafe() throws {
        let backend = try testDevice()
        let a = try backend.tensor([Float](repeating: 1, count: 1000), [1000], label: "a")
        let b = try backend.tensor([Float](repeating: 2, count: 1000), [1000], label: "b")
        let out = try backend.add(a, b)
        XCTAssertEqual(out.uploads, 0, "an output written by a kernel is not uploaded")
        // Editing the host copy of `a` right after its non-blocking upload waits for the upload.
        try a.withMutableHostValues { $0[0] = 100 }
        XCTAssertEqual(try out.read()[0], 3, "the kernel saw the value at upload time")
        let out2 = try backend.add(a, b)
        XCTAssertEqual(try out2.read()[0], 102)
    }

    func testReferenceTensorsStayOnTheHost() throws {
        let backend = ReferenceBackend()
        let t = try backend.tensor([1, -2], [2])
        let r = try backend.reluForward(t)
        XCTAssertEqual(try r.read(), [1, 0])
        XCTAssertEqual(r.residency, .host)
        XCTAssertThrowsError(try t.deviceBuffer())
    }
}
