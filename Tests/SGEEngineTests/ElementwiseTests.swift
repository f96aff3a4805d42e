import SGEEngine
import SGEKernels
import SGEOpenCL
import SGETensor
import SGEDeviceTestSupport
import XCTest

/// Device vs reference for the elementwise kernels. These are single float operations per element
/// (a*x + b*y rounds once or twice in float32 vs once from Double in the reference), so the
/// tolerance is a few float32 ulps.
final class ElementwiseTests: XCTestCase {
    static let rtol = 4e-7 * 4
    static let atol = 1e-7

    /// Sizes that are not multiples of any work-group size, plus 1.
    let sizes = [1, 7, 93, 1000, 4099]

    func testDeviceMatchesReference() throws {
        let device = try testDevice()
        let ref = ReferenceBackend()
        var rng = SeededRNG(seed: 7)
        for n in sizes {
            let x = rng.normals(n), y = rng.normals(n)
            func both<R>(_ f: (any Backend, Tensor, Tensor) throws -> R) throws -> (R, R) {
                (try f(device, try device.tensor(x, [n]), try device.tensor(y, [n])),
                 try f(ref, try ref.tensor(x, [n]), try ref.tensor(y, [n])))
            }
            let (d1, r1) = try both { b, tx, ty in try b.axpby(alpha: 0.7, tx, beta: -1.3, ty); return ty }
            try assertClose(d1, r1, atol: Self.atol, rtol: Self.rtol, "axpby n=\(n)")
            let (d2, r2) = try both { b, tx, ty in try b.add(tx, ty) }
            try assertClose(d2, r2, atol: Self.atol, rtol: Self.rtol, "add n=\(n)")
            let (d3, r3) = try both { b, tx, _ in try b.scale(tx, 0.3); return tx }
            try assertClose(d3, r3, atol: Self.atol, rtol: Self.rtol, "scale n=\(n)")
            let (d4, r4) = try both { b, tx, _ in try b.fill(tx, 2.5); return tx }
            try assertClose(d4, r4, atol: 0, rtol: 0, "fill n=\(n)")
            let (d5, r5) = try both { b, tx, _ in try b.reluForward(tx) }
            try assertClose(d5, r5, atol: 0, rtol: 0, "relu n=\(n)")
            let (d6, r6) = try both { b, tx, ty in try b.reluBackward(out: b.reluForward(tx), gradOut: ty) }
            try assertClose(d6, r6, atol: 0, rtol: 0, "relu backward n=\(n)")
            // add+relu: one float add (as in add), then an exact max: same tolerance as add.
            let (d8, r8) = try both { b, tx, ty in try b.addReLU(tx, ty) }
            try assertClose(d8, r8, atol: Self.atol, rtol: Self.rtol, "add+relu n=\(n)")
            let (d9, r9) = try both { b, tx, ty in try b.reluForward(b.add(tx, ty)) }
            XCTAssertEqual(try d8.read(), try d9.read(), "add_relu must equal add then relu_forward bit for bit (n=\(n))")
            _ = r9
            let (d7, r7) = try both { b, tx, ty in try b.copy(tx, to: ty); return ty }
            try assertClose(d7, r7, atol: 0, rtol: 0, "copy n=\(n)")
        }
    }

    /// The benchmarks' two bandwidth kernels (plain and streaming stores) copy exactly: every float4
    /// below n4 arrives bit for bit and the padding work-items of a rounded-up global size write nothing.
    func testBandwidthCopyKernelsCopyExactly() throws {
        let device = try testDevice().device
        for (name, source) in [("copy_float4", KernelSource.elementwise), ("copy_float4_stream", KernelSource.bandwidth)] {
            let kernel = try device.kernel(name, source: source)
            for n4 in [1, 7, 1000, 4099] {
                var rng = SeededRNG(seed: UInt64(n4))
                let src = rng.normals(4 * n4)
                let sentinel = [Float](repeating: -7, count: 4 * (n4 + 64))
                let a = try device.buffer(bytes: 4 * src.count), b = try device.buffer(bytes: 4 * sentinel.count)
                try src.withUnsafeBytes { _ = try device.write(a, from: $0.baseAddress!, bytes: $0.count, blocking: true) }
                try sentinel.withUnsafeBytes { _ = try device.write(b, from: $0.baseAddress!, bytes: $0.count, blocking: true) }
                try kernel.enqueue([.buffer(a), .buffer(b), .int(Int32(n4))], global: [(n4 + 63) / 64 * 64], local: [64])
                var got = [Float](repeating: 0, count: sentinel.count)
                try got.withUnsafeMutableBytes { try device.read(b, into: $0.baseAddress!, bytes: $0.count) }
                XCTAssertEqual(Array(got[..<(4 * n4)]), src, "\(name) n4=\(n4)")
                XCTAssertEqual(Array(got[(4 * n4)...]), Array(sentinel[(4 * n4)...]), "\(name) n4=\(n4) wrote past n4")
            }
        }
    }

    func testShapeMismatchIsATypedError() throws {
        for backend in [try testDevice() as any Backend, ReferenceBackend()] {
            let a = try backend.tensor([1, 2, 3], [3], label: "a")
            let b = try backend.tensor([1, 2], [2], label: "b")
            XCTAssertThrowsError(try backend.add(a, b)) { error in
                XCTAssertEqual("\(error)", "shape error: add: a has shape [3] but b has shape [2]")
            }
        }
    }
}
