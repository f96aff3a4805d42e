import Foundation
import SGEEngine
import SGEReference
import SGETensor
import SGEDeviceTestSupport
import XCTest

final class SGETests: XCTestCase {
    /// Device float32 vs the Double reference: c and the reductions are float32 sums over up to
    /// K·M = 2e5 terms, and grad_x carries 1/(σ+ε); errors are a few 1e-6 relative to the largest
    /// value of the tensor, so compare with atol scaled by max|ref| and a small rtol.
    static let atolScale = 2e-5
    static let rtol = 1e-4

    static var goldenDirectory: URL { fixturesDirectory().appendingPathComponent("golden") }

    func goldenFiles() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: Self.goldenDirectory.path).filter { $0.hasSuffix(".safetensors") }.sorted()
    }

    func random(_ n: Int, seed: UInt64, scale: Float = 1, offset: Float = 0) -> [Float] {
        var rng = SeededRNG(seed: seed)
        return (0..<n).map { _ in rng.normal() * scale + offset }
    }

    func close(_ got: [Float], _ want: [Float], shape: Shape? = nil, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        let scale = want.reduce(Float(0)) { max($0, abs($1)) }
        assertClose(got, want, shape: shape, atol: Self.atolScale * Double(max(scale, 1e-3)), rtol: Self.rtol, what, file: file, line: line)
    }

    // MARK: golden files

    func testGoldenFilesOnDevice() throws {
        let device = try testDevice()
        let files = try goldenFiles()
        XCTAssertEqual(files.count, 6)
        for f in files {
            let c = try SGEGolden.Case.load(path: Self.goldenDirectory.appendingPathComponent(f).path)
            for r in try SGEGolden.check(c, on: device) {
                XCTAssertTrue(r.passed, "\(f) \(r.name) on \(device.name): max abs \(r.maxAbs) > tolerance \(r.tolerance)")
            }
        }
    }

    func testGoldenRuleRejectsWrongResults() throws {
        let c = try SGEGolden.Case.load(path: Self.goldenDirectory.appendingPathComponent("mid_random.safetensors").path)
        let backend = ReferenceBackend()
        let got = try SGEGolden.compute(c, on: backend)
        let good = SGEGolden.evaluate("out", actual: got["out"]!, golden: c.expected["out"]!.data, f32Err: c.f32Err["out"]!)
        XCTAssertTrue(good.passed, "the reference must pass: \(good.maxAbs) > \(good.tolerance)")
        // One element off by 1e-3.
        var perturbed = got["out"]!
        perturbed[123] += 1e-3
        XCTAssertFalse(SGEGolden.evaluate("out", actual: perturbed, golden: c.expected["out"]!.data, f32Err: c.f32Err["out"]!).passed)
        // Weight and bias swapped.
        let swapped = SGEGolden.Case(path: c.path, x: c.x, gradOut: c.gradOut, weight: c.bias, bias: c.weight, groups: c.groups,
                                     expected: c.expected, f32Err: c.f32Err)
        let results = try SGEGolden.check(swapped, on: backend)
        XCTAssertFalse(results.first { $0.name == "out" }!.passed, "swapped weight/bias must fail on out")
        // NaN always fails.
        var nan = got["grad_x"]!
        nan[0] = .nan
        XCTAssertFalse(SGEGolden.evaluate("grad_x", actual: nan, golden: c.expected["grad_x"]!.data, f32Err: c.f32Err["grad_x"]!).passed)
    }

    // MARK: device vs reference

    struct Case {
        let shape: Shape
        let groups: Int
        var normalize = true
        var paths: [SGEPath] = [.local, .streaming]
        /// 1 is the narrow variant (the CPU default), > 1 the wide one (the GPU default is 256).
        var workGroupSizes: [Int?] = [1, 64]
    }

    func checkAgainstReference(_ device: OpenCLBackend, _ c: Case, seed: UInt64) throws {
        let ref = ReferenceBackend()
        let xv = random(c.shape.count, seed: seed, offset: 0.3)
        let gov = random(c.shape.count, seed: seed + 1)
        let wv = random(c.groups, seed: seed + 2, scale: c.normalize ? 1 : 0.2)
        let bv = random(c.groups, seed: seed + 3)
        let gw0 = random(c.groups, seed: seed + 4), gb0 = random(c.groups, seed: seed + 5)
        let rx = try ref.tensor(xv, c.shape), rw = try ref.tensor(wv, [c.groups]), rb = try ref.tensor(bv, [c.groups])
        let (rout, rsaved) = try ref.sgeForward(rx, weight: rw, bias: rb, groups: c.groups, normalize: c.normalize)
        let rgw = try ref.tensor(gw0, [c.groups]), rgb = try ref.tensor(gb0, [c.groups])
        let rgx = try ref.sgeBackward(try ref.tensor(gov, c.shape), x: rx, weight: rw, bias: rb, groups: c.groups, normalize: c.normalize,
                                      saved: rsaved, gradWeight: rgw, gradBias: rgb)
        let rgate = try ref.sgeGate(rx, weight: rw, bias: rb, groups: c.groups, normalize: c.normalize)
        for path in c.paths {
            for wg in c.workGroupSizes {
                let what = "\(c.shape) G=\(c.groups) normalize=\(c.normalize) \(path) WG=\(wg.map(String.init) ?? "default")"
                let x = try device.tensor(xv, c.shape), w = try device.tensor(wv, [c.groups]), b = try device.tensor(bv, [c.groups])
                let (out, saved) = try device.sgeForward(x, weight: w, bias: b, groups: c.groups, normalize: c.normalize, path: path, workGroupSize: wg)
                let gw = try device.tensor(gw0, [c.groups]), gb = try device.tensor(gb0, [c.groups])
                let gx = try device.sgeBackward(try device.tensor(gov, c.shape), x: x, weight: w, bias: b, groups: c.groups,
                                                normalize: c.normalize, saved: saved, gradWeight: gw, gradBias: gb, path: path,
                                                workGroupSize: wg).gradX
                close(try out.read(), try rout.read(), shape: c.shape, "out \(what)")
                close(try saved.means.read(), try rsaved.means.read(), "means \(what)")
                close(try saved.stats.read(), try rsaved.stats.read(), "stats \(what)")
                close(try gx.read(), try rgx.read(), shape: c.shape, "grad_x \(what)")
                close(try gw.read(), try rgw.read(), "grad_weight (accumulated) \(what)")
                close(try gb.read(), try rgb.read(), "grad_bias (accumulated) \(what)")
            }
        }
        let gate = try device.sgeGate(try device.tensor(xv, c.shape), weight: try device.tensor(wv, [c.groups]),
                                      bias: try device.tensor(bv, [c.groups]), groups: c.groups, normalize: c.normalize)
        XCTAssertEqual(gate.shape, rgate.shape)
        close(try gate.read(), try rgate.read(), "gate \(c.shape) G=\(c.groups)")
    }

    func testDeviceMatchesReferenceOnAwkwardShapes() throws {
        let device = try testDevice()
        let cases = [
            Case(shape: [1, 8, 7, 13], groups: 2, workGroupSizes: [nil, 1, 16, 256]),   // batch 1, M = 91, K = 4
            Case(shape: [2, 16, 1, 2], groups: 16),                                     // H*W = 2, G = C (K = 1)
            Case(shape: [3, 5, 3, 31], groups: 1, workGroupSizes: [1, 32]),           // G = 1, M = 93
            Case(shape: [2, 128, 9, 9], groups: 4),                                     // K = 32
            Case(shape: [1, 256, 3, 5], groups: 2),                                     // K = 128 > WG: rows per work-item
            Case(shape: [1, 256, 14, 14], groups: 64),                                  // G = 64, K = 4
            // The narrow kernels' streaming stores on CPU drivers (Kernels/sge_*.cl): a small-plane slab of
            // K*M = 660 floats, so slabs after the first start off a 64-byte line (scalar head and tail);
            // M = 20, where almost every 16-float line wraps past a row end, without the normalisation;
            // M = 320 > 256 with K = 8, whole lines per row; M = 300, forward rows off line boundaries
            // (normal stores; the backward streams each row after a scalar head).
            Case(shape: [3, 24, 5, 11], groups: 2, workGroupSizes: [1]),
            Case(shape: [2, 64, 4, 5], groups: 2, normalize: false, workGroupSizes: [1]),
            Case(shape: [2, 16, 16, 20], groups: 2, workGroupSizes: [1]),
            Case(shape: [2, 16, 15, 20], groups: 2, workGroupSizes: [1]),
            Case(shape: [2, 8, 5, 7], groups: 2, normalize: false),                     // the no-normalisation ablation
            Case(shape: [1, 2, 1, 1], groups: 1, normalize: false, paths: [.streaming]),   // H*W = 1 without the std
        ]
        for (i, c) in cases.enumerated() { try checkAgainstReference(device, c, seed: UInt64(100 + 10 * i)) }
    }

    func testDeviceMatchesReferenceAtLargeSlab() throws {
        // K = 64 at 56x56 (a slab of 800 KB: streaming on GPUs with 48 KiB local memory).
        try checkAgainstReference(try testDevice(), Case(shape: [1, 64, 56, 56], groups: 1, workGroupSizes: [1, 64, 256]), seed: 7)
    }

    /// The register variant (Kernels/sge_gpu_reg.cl, the GPU default where a slab fits): positions not a
    /// multiple of the work-group, batch 1, H*W = 1 and 2, G = 1 and G = C, K = 32 (one position per
    /// work-item), channel sums in several chunks of RROWS rows (K = 20 and 32 at wide work-groups,
    /// the last chunk partial), a 56x56 slab at 512 work-items, and the no-normalisation ablation.
    func testRegisterVariantMatchesReference() throws {
        let device = try testDevice()
        let cases = [
            Case(shape: [1, 8, 7, 13], groups: 2, paths: [.registers], workGroupSizes: [nil, 16, 128]),   // K = 4, M = 91
            Case(shape: [2, 16, 1, 2], groups: 16, paths: [.registers], workGroupSizes: [nil, 64]),       // G = C, H*W = 2
            Case(shape: [3, 5, 3, 31], groups: 1, paths: [.registers], workGroupSizes: [nil]),            // G = 1, K = 5
            Case(shape: [2, 128, 9, 9], groups: 4, paths: [.registers], workGroupSizes: [nil, 256]),      // K = 32; 2 chunks at 256
            Case(shape: [2, 40, 5, 7], groups: 2, paths: [.registers], workGroupSizes: [512]),            // K = 20: chunks 8, 8, 4
            Case(shape: [1, 64, 56, 56], groups: 16, paths: [.registers], workGroupSizes: [nil]),         // K = 4, M = 3136: WG 512
            Case(shape: [2, 8, 5, 7], groups: 2, normalize: false, paths: [.registers], workGroupSizes: [nil]),
            Case(shape: [1, 2, 1, 1], groups: 1, normalize: false, paths: [.registers], workGroupSizes: [nil]),   // H*W = 1
        ]
        for (i, c) in cases.enumerated() { try checkAgainstReference(device, c, seed: UInt64(300 + 10 * i)) }
    }

    /// A spatially constant slab gives sigma = 0 exactly on the register variant too (mu shifted by
    /// c_0), so out = x * sigmoid(b) with no division noise; and a slab too large for registers is a
    /// typed error naming the register path.
    func testRegisterVariantConstantSlabAndLimits() throws {
        let device = try testDevice()
        let x = try device.tensor([Float](repeating: 0.75, count: 2 * 8 * 5 * 7), [2, 8, 5, 7])
        let w = try device.tensor([2, -3], [2]), b = try device.tensor([0.5, -0.25], [2])
        let (out, saved) = try device.sgeForward(x, weight: w, bias: b, groups: 2, normalize: true, path: .registers, workGroupSize: nil)
        let stats = try saved.stats.read()
        for s in 0..<4 { XCTAssertEqual(stats[2 * s + 1], 0, "sigma of constant slab \(s)") }
        let o = try out.read()
        for (i, v) in o.enumerated() {
            let g = (i / 35) % 8 / 4   // channel (i / 35) of 8; 4 channels per group
            let want = 0.75 / (1 + exp(-Float(g == 0 ? 0.5 : -0.25)))
            XCTAssertEqual(v, want, accuracy: 1e-6, "out[\(i)]")
        }
        let big = try device.tensor(random(40 * 64, seed: 9), [1, 40, 8, 8])
        assertSGEError(try device.sgeForward(big, weight: device.zeros([1]), bias: device.zeros([1]), groups: 1, normalize: true,
                                             path: .registers, workGroupSize: nil), contains: "register path")
        assertSGEError(try device.sgeForward(x, weight: w, bias: b, groups: 2, normalize: true, path: .registers, workGroupSize: 48),
                       contains: "power of two")
    }

    func testGradientsAccumulateAcrossCalls() throws {
        let device = try testDevice()
        let x = try device.tensor(random(2 * 8 * 3 * 3, seed: 1), [2, 8, 3, 3])
        let go = try device.tensor(random(2 * 8 * 3 * 3, seed: 2), [2, 8, 3, 3])
        let w = try device.tensor([0.5, -1], [2]), b = try device.tensor([1, 0], [2])
        let (_, saved) = try device.sgeForward(x, weight: w, bias: b, groups: 2, normalize: true)
        let gw = device.zeros([2]), gb = device.zeros([2])
        _ = try device.sgeBackward(go, x: x, weight: w, bias: b, groups: 2, normalize: true, saved: saved, gradWeight: gw, gradBias: gb)
        let once = try gw.read() + gb.read()
        _ = try device.sgeBackward(go, x: x, weight: w, bias: b, groups: 2, normalize: true, saved: saved, gradWeight: gw, gradBias: gb)
        let twice = try gw.read() + gb.read()
        XCTAssertTrue(once.contains { $0 != 0 })
        for (a, b) in zip(once, twice) { XCTAssertEqual(b, 2 * a, accuracy: 1e-5 * max(1, abs(a))) }
    }

    // MARK: input errors

    func assertSGEError(_ body: @autoclosure () throws -> Any, contains text: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard let e = error as? SGEError else { return XCTFail("not an SGEError: \(error)", file: file, line: line) }
            XCTAssertTrue(e.description.contains(text), "'\(e.description)' does not mention '\(text)'", file: file, line: line)
        }
    }

    func checkInputErrors<B: BackendBase & SGEOps>(_ be: B) throws {
        let x = try be.tensor(random(2 * 6 * 2 * 2, seed: 3), [2, 6, 2, 2], label: "x")
        let w2 = be.zeros([2], label: "w"), b2 = be.zeros([2], label: "b")
        let w4 = be.zeros([4], label: "w"), b4 = be.zeros([4], label: "b")
        assertSGEError(try be.sgeForward(x, weight: w4, bias: b4, groups: 4, normalize: true), contains: "not divisible by groups")
        assertSGEError(try be.sgeForward(x, weight: w2, bias: b2, groups: 0, normalize: true), contains: "groups must be positive")
        assertSGEError(try be.sgeForward(x, weight: w2, bias: b2, groups: -2, normalize: true), contains: "groups must be positive")
        assertSGEError(try be.sgeForward(x, weight: w4, bias: b2, groups: 2, normalize: true), contains: "expected [2]")
        assertSGEError(try be.sgeForward(x, weight: w2, bias: b4, groups: 2, normalize: true), contains: "expected [2]")
        let x1 = try be.tensor(random(12, seed: 4), [2, 6, 1, 1], label: "x")
        assertSGEError(try be.sgeForward(x1, weight: w2, bias: b2, groups: 2, normalize: true), contains: "unbiased std")
        assertSGEError(try be.sgeGate(x1, weight: w2, bias: b2, groups: 2, normalize: true), contains: "unbiased std")
        let empty = be.zeros([0, 6, 2, 2], label: "x")
        assertSGEError(try be.sgeForward(empty, weight: w2, bias: b2, groups: 2, normalize: true), contains: "empty")
        let flat = be.zeros([6, 4], label: "x")
        assertSGEError(try be.sgeForward(flat, weight: w2, bias: b2, groups: 2, normalize: true), contains: "4 dimensions")
        let (_, saved) = try be.sgeForward(x, weight: w2, bias: b2, groups: 2, normalize: true)
        let badGo = be.zeros([2, 6, 2, 3], label: "go")
        assertSGEError(try be.sgeBackward(badGo, x: x, weight: w2, bias: b2, groups: 2, normalize: true, saved: saved,
                                          gradWeight: be.zeros([2]), gradBias: be.zeros([2])), contains: "grad_out")
        let go = be.zeros([2, 6, 2, 2], label: "go")
        assertSGEError(try be.sgeBackward(go, x: x, weight: w2, bias: b2, groups: 2, normalize: true, saved: saved,
                                          gradWeight: be.zeros([3]), gradBias: be.zeros([2])), contains: "grad_weight")
        let (_, saved3) = try be.sgeForward(x, weight: be.zeros([3]), bias: be.zeros([3]), groups: 3, normalize: true)
        assertSGEError(try be.sgeBackward(go, x: x, weight: w2, bias: b2, groups: 2, normalize: true, saved: saved3,
                                          gradWeight: be.zeros([2]), gradBias: be.zeros([2])), contains: "saved state")
    }

    func testInputErrorsOnReference() throws { try checkInputErrors(ReferenceBackend()) }

    func testInputErrorsOnDevice() throws { try checkInputErrors(try testDevice()) }

    /// `sge bench sge --sweep` skips (path, work-group) pairs whose slab exceeds local memory (as
    /// 4 channels x 56x56 does on an NVIDIA GPU's 48 KiB) instead of ending the sweep.
    func testLocalPathAvailabilityFollowsLocalMemory() throws {
        let device = try testDevice()
        XCTAssertNil(device.sgeLocalPathUnavailable(shape: Shape([2, 8, 5, 7]), groups: 2, workGroupSize: 16))
        // One slab as large as the device's whole local memory cannot fit, whatever the size.
        let positions = Int(device.device.info.localMemory / 4) + 1
        let reason = device.sgeLocalPathUnavailable(shape: Shape([1, 1, 1, positions]), groups: 1, workGroupSize: 16)
        XCTAssertNotNil(reason)
        XCTAssertTrue(reason?.contains("local memory") ?? false, reason ?? "")
        XCTAssertNotNil(device.sgeLocalPathUnavailable(shape: Shape([1, 6, 2, 2]), groups: 4, workGroupSize: 16))
    }

    func testNonPowerOfTwoWorkGroupIsRejected() throws {
        let device = try testDevice()
        let x = try device.tensor(random(32, seed: 5), [1, 2, 4, 4])
        assertSGEError(try device.sgeForward(x, weight: device.zeros([1]), bias: device.zeros([1]), groups: 1, normalize: true,
                                             path: .local, workGroupSize: 48), contains: "power of two")
    }
}
