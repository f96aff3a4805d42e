import Foundation
import SGEEngine
import SGEOpenCL
import SGETensor
import SGEDeviceTestSupport
import XCTest

/// The per-shape convolution path choice: timed once per device, stored beside the CLBlast
/// tuning, reused, and never allowed to change the numbers beyond the conv tolerance.
final class ConvChoiceTests: XCTestCase {
    /// The conv tests' tolerance (ConvTests): float32 sums of ≤ 16·9 products of values in [-1, 1]
    /// in a blocked order against the Double reference; a dropped or doubled tap fails it.
    let (atol, rtol) = (2e-4, 1e-4)

    private func temporaryFile() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sge-conv-choice-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir.appendingPathComponent("choices.conv.json")
    }

    /// Forward and backward of one 3×3 convolution on `device` against the reference; returns
    /// nothing, asserts closeness of all three results.
    private func runAndCompare(_ device: OpenCLBackend, _ what: String) throws {
        var rng = SeededRNG(seed: 7)
        let (xs, ws, os): (Shape, Shape, Shape) = ([3, 6, 11, 9], [5, 6, 3, 3], [3, 5, 11, 9])
        let (x, w, go) = (rng.uniforms(xs.count), rng.uniforms(ws.count), rng.uniforms(os.count))
        var results: [[Float]] = []
        for backend in [device as any Backend, ReferenceBackend() as any Backend] {
            let (xt, wt) = (try backend.tensor(x, xs, label: "x"), try backend.tensor(w, ws, label: "w"))
            let out = try backend.conv2dForward(xt, weight: wt, bias: nil, params: Conv2dParams(stride: 1, padding: 1))
            let gw = backend.zeros(ws, label: "gw")
            let gx = try backend.conv2dBackward(try backend.tensor(go, os, label: "go"), x: xt, weight: wt,
                                                params: Conv2dParams(stride: 1, padding: 1), gradWeight: gw, gradBias: nil, needInputGrad: true)
            results += [try out.read(), try gx!.read(), try gw.read()]
        }
        for (i, name) in ["output", "grad input", "grad weight"].enumerated() {
            assertClose(results[i], results[i + 3], atol: atol, rtol: rtol, "\(what): \(name)")
        }
    }

    func testFirstRunTimesCandidatesStoresAndLaterRunsReuse() throws {
        let device = try testDevice()
        let file = try temporaryFile()
        let chooser = device.convWorkspace.chooser
        (chooser.file, chooser.minWork, chooser.find, chooser.repeats) = (file, 0, true, 1)
        chooser.candidateOverride = [.cpuKernels, .clblast]
        try runAndCompare(device, "first run (timing both paths)")

        let stored = try XCTUnwrap(try ConvChoices.load(for: device.device.info, from: file), "no choice file written")
        let key = "3x6x11x9 5x6x3x3 s1x1 p1x1 d1x1"
        let record = try XCTUnwrap(stored.choices[key], "no choice for \(key) in \(stored.choices.keys)")
        let (forward, backward) = (try XCTUnwrap(record.forward), try XCTUnwrap(record.backward))
        XCTAssert(["cpu-kernels", "clblast"].contains(forward) && ["cpu-kernels", "clblast"].contains(backward), "\(record)")
        XCTAssertEqual(Set(record.timings?.keys.map { $0 } ?? []),
                       ["forward cpu-kernels", "forward clblast", "backward cpu-kernels", "backward clblast"])
        XCTAssert(record.timings!.values.allSatisfy { $0 > 0 }, "\(record)")

        // A new process (a fresh chooser) reads the stored choice instead of timing again.
        let again = try testDevice()
        (again.convWorkspace.chooser.file, again.convWorkspace.chooser.minWork) = (file, 0)
        again.convWorkspace.chooser.candidateOverride = [.cpuKernels, .clblast]
        let x = again.zeros([3, 6, 11, 9]), w = again.zeros([5, 6, 3, 3])
        let choice = try again.convChoice(x: x, weight: w, params: Conv2dParams(stride: 1, padding: 1), .forward)
        XCTAssertEqual(choice.path.rawValue, forward)
        XCTAssertEqual(choice.source, .timed)
        try runAndCompare(again, "second run (stored choice)")
        XCTAssertEqual(try ConvChoices.load(for: device.device.info, from: file), stored, "the stored choice was timed again")

        // Each stored path runs and gives the same numbers: force the other one through the file.
        for path in ["cpu-kernels", "clblast"] {
            var edited = stored
            edited.choices[key] = ConvChoiceRecord(forward: path, backward: path)
            try edited.save(for: device.device.info, to: file)
            let third = try testDevice()
            (third.convWorkspace.chooser.file, third.convWorkspace.chooser.minWork) = (file, 0)
            third.convWorkspace.chooser.candidateOverride = [.cpuKernels, .clblast]
            XCTAssertEqual(try third.convChoice(x: x, weight: w, params: Conv2dParams(stride: 1, padding: 1), .backward).path.rawValue, path)
            try runAndCompare(third, "stored path \(path)")
        }
    }

    /// Every CLBlast backward plan the GPU chooser times gives the reference's numbers, the split-K
    /// one included (batch 3: slices of 2 images and a last slice of 1).
    func testEveryCLBlastBackwardPlanMatchesTheReference() throws {
        for path in [ConvPath.clblast, .clblastPerImage, .clblastOneGemm, .clblastSplitK] {
            let device = try testDevice()
            let chooser = device.convWorkspace.chooser
            (chooser.file, chooser.minWork) = (try temporaryFile(), 0)
            chooser.candidateOverride = [path]
            try runAndCompare(device, "backward path \(path.rawValue)")
            let c = try device.convChoice(x: device.zeros([3, 6, 11, 9]), weight: device.zeros([5, 6, 3, 3]),
                                          params: Conv2dParams(stride: 1, padding: 1), .backward)
            XCTAssertEqual(c.path, path)
        }
    }

    /// Within the tie margin the earlier candidate wins (here every candidate is "within" it).
    func testNearTiesKeepTheEarlierCandidate() throws {
        for order in [[ConvPath.clblast, .cpuKernels], [.cpuKernels, .clblast]] {
            let device = try testDevice()
            let chooser = device.convWorkspace.chooser
            (chooser.file, chooser.minWork, chooser.repeats, chooser.tieMargin) = (try temporaryFile(), 0, 1, 1e9)
            chooser.candidateOverride = order
            try runAndCompare(device, "order \(order)")
            let x = device.zeros([3, 6, 11, 9]), w = device.zeros([5, 6, 3, 3])
            for direction in [ConvDirection.forward, .backward] {
                let c = try device.convChoice(x: x, weight: w, params: Conv2dParams(stride: 1, padding: 1), direction)
                XCTAssertEqual(c.path, order[0], "\(direction), candidates \(order)")
                XCTAssertEqual(c.source, .timed)
            }
        }
    }

    /// A knob that rules a candidate out (here Winograd) must not leave a choice stored without it.
    func testRestrictedRunsStoreNothing() throws {
        let device = try testDevice()
        let file = try temporaryFile()
        let chooser = device.convWorkspace.chooser
        (chooser.file, chooser.minWork, chooser.repeats) = (file, 0, 1)
        device.convWorkspace.winograd = false
        try runAndCompare(device, "Winograd ruled out")
        XCTAssertNil(try ConvChoices.load(for: device.device.info, from: file)?.choices["3x6x11x9 5x6x3x3 s1x1 p1x1 d1x1"])
        // Unrestricted, the same shape is timed over every candidate, Winograd's included.
        device.convWorkspace.winograd = nil
        try runAndCompare(device, "all candidates")
        let record = try XCTUnwrap(try ConvChoices.load(for: device.device.info, from: file)?.choices["3x6x11x9 5x6x3x3 s1x1 p1x1 d1x1"])
        XCTAssert(record.timings?.keys.contains("forward winograd") == true, "\(record)")
    }

    func testUnknownOrInapplicableStoredPathsAreIgnored() throws {
        let device = try testDevice()
        let file = try temporaryFile()
        let key = "3x6x11x9 5x6x3x3 s1x1 p1x1 d1x1"
        // "clblast-per-image" is a backward path only; "bogus" is no path at all.
        try ConvChoices(device: device.device.info.cacheIdentity, choices: [key: ConvChoiceRecord(forward: "clblast-per-image", backward: "bogus")])
            .save(for: device.device.info, to: file)
        let chooser = device.convWorkspace.chooser
        (chooser.file, chooser.find) = (file, false)
        chooser.candidateOverride = [.cpuKernels, .clblast]
        let x = device.zeros([3, 6, 11, 9]), w = device.zeros([5, 6, 3, 3])
        for direction in [ConvDirection.forward, .backward] {
            let c = try device.convChoice(x: x, weight: w, params: Conv2dParams(stride: 1, padding: 1), direction)
            XCTAssertEqual(c.path, .cpuKernels, "\(direction)")
            XCTAssertEqual(c.source, .fallback, "\(direction)")
        }
        try runAndCompare(device, "untimed default")
        // A file of another device is refused with a message naming both.
        try ConvChoices(device: "another device", choices: [:]).save(for: device.device.info, to: file)
        XCTAssertThrowsError(try ConvChoices.load(for: device.device.info, from: file)) { error in
            XCTAssert("\(error)".contains("another device"), "\(error)")
        }
    }

    func testKnobsForceThePath() throws {
        let device = try testDevice()
        (device.convWorkspace.chooser.file, device.convWorkspace.chooser.find) = (try temporaryFile(), false)
        let x = device.zeros([3, 6, 11, 9]), w = device.zeros([5, 6, 3, 3])
        device.convWorkspace.cpuKernels = false
        let c = try device.convChoice(x: x, weight: w, params: Conv2dParams(stride: 1, padding: 1), .backward)
        XCTAssertEqual(c.path, .clblast)
        XCTAssertEqual(c.source, .forced)
        try runAndCompare(device, "forced CLBlast")
    }

    /// Every shipped convolution choice names a path that exists, for a key that parses.
    func testShippedChoicesAreValid() throws {
        for entry in ShippedTuning.embedded.classes {
            for (key, record) in entry.conv ?? [:] {
                XCTAssertNotNil(key.range(of: #"^\d+x\d+x\d+x\d+ \d+x\d+x\d+x\d+ s\d+x\d+ p\d+x\d+ d\d+x\d+$"#, options: .regularExpression),
                                "\(entry.name): key \(key)")
                for name in [record.forward, record.backward].compactMap({ $0 }) {
                    XCTAssertNotNil(ConvPath(rawValue: name), "\(entry.name) \(key): unknown path \(name)")
                }
            }
        }
    }
}
