import Foundation
import SGEDistributed
import SGEEngine
@testable import SGENet
import SGEOpenCL
import SGETensor
import SGEDeviceTestSupport
import XCTest

/// Data parallelism: the sharded loader, synchronised BatchNorm's split ops, and whole `mpirun -np 2`
/// runs of the built binary (equivalence with one process, identical ranks, faults, mismatches).
final class DistributedTests: XCTestCase {
    /// 2 ranks × batch 64 vs 1 × 128 after 5 reference steps: the only differences are float rounding
    /// orders (gradient sums of 64 + 64 values, then averaged), ~1e-7 per step.
    static let referenceEquivalenceRTol = 1e-5
    /// On PoCL the float kernels' sums run in other orders and the split BatchNorm runs on the host
    /// in Double while one process uses the fused float kernels (ops within ~1e-5..1e-4 of the
    /// reference): measured 4e-6 after 5 steps; 1e-4 leaves room for other CPUs' vector widths.
    static let poclEquivalenceRTol = 1e-4

    func testShardedLoaderCoversEveryBatchOnce() throws {
        let data = try Dataset(images: (0..<(40 * 4)).map(Float.init), labels: (0..<40).map { Int32($0 % 10) }, channels: 1, height: 2, width: 2,
                               classNames: (0..<10).map(String.init), mean: [0], std: [1], source: "test")
        let single = try BatchLoader(dataset: data, batchSize: 8, seed: 3, prefetch: false)
        let shards = try (0..<2).map { r -> BatchLoader in
            let l = try BatchLoader(dataset: data, batchSize: 4, seed: 3, prefetch: false)
            l.setShard(rank: r, count: 2)
            return l
        }
        for epoch in 0..<2 {
            single.startEpoch(epoch)
            shards.forEach { $0.startEpoch(epoch) }
            XCTAssertEqual(single.batchesPerEpoch, shards[0].batchesPerEpoch)
            while let b = single.next() {
                let parts = shards.map { $0.next()! }
                XCTAssertEqual(Set(b.images), Set(parts.flatMap(\.images)), "epoch \(epoch) batch \(b.index)")
                XCTAssertTrue(Set(parts[0].labels.indices.map { parts[0].images[$0 * 4] }).isDisjoint(with: Set(parts[1].images)))
            }
        }
    }

    /// The split ops with one rank's sums reproduce the fused training BatchNorm (forward, backward,
    /// running statistics) on the reference backend and on PoCL.
    func testSplitBatchNormMatchesFused() throws {
        var backends: [any Backend] = [ReferenceBackend()]
        if let device = try? testDevice() { backends.append(device) }
        for backend in backends {
            for relu in [false, true] {
                var rng = SeededRNG(seed: 7)
                let shape = Shape([3, 5, 7, 2])
                let xv = rng.normals(shape.count, std: 2).map { $0 + 0.5 }, gv = rng.normals(shape.count, std: 1)
                let gamma = try backend.tensor(rng.normals(5, std: 1), [5]), beta = try backend.tensor(rng.normals(5, std: 1), [5])
                let x = try backend.tensor(xv, shape), g = try backend.tensor(gv, shape)
                let rm = try backend.tensor([Float](repeating: 0, count: 5), [5]), rv = try backend.tensor([Float](repeating: 1, count: 5), [5])
                let (fused, saved) = try backend.batchNormForward(x, gamma: gamma, beta: beta, runningMean: rm, runningVar: rv,
                                                                  training: true, momentum: 0.1, eps: 1e-5, relu: relu)
                let gg = backend.zeros([5]), gb = backend.zeros([5])
                let fusedGX = try backend.batchNormBackward(g, x: x, gamma: gamma, saved: saved, gradGamma: gg, gradBeta: gb,
                                                            reluOutput: relu ? fused : nil)
                // Split path through BatchNormSync with a one-rank communicator.
                let bn = try BatchNorm2d(backend, 5, name: "bn", fusedReLU: relu)
                try bn.weight.value.write(try gamma.read())
                try bn.bias.value.write(try beta.read())
                bn.sync = BatchNormSync(communicator: SingleProcess())
                let out = try bn.forward(x, training: true)
                let gx = try bn.backward(g)
                let tol = backend is ReferenceBackend ? 1e-5 : 1e-4
                for (a, r, what) in [(out, fused, "out"), (gx, fusedGX, "grad x"), (bn.weight.grad, gg, "grad gamma"),
                                     (bn.bias.grad, gb, "grad beta"), (bn.runningMean, rm, "running mean"), (bn.runningVar, rv, "running var")] {
                    let c = compare(try a.read(), try r.read(), atol: tol, rtol: tol)
                    XCTAssertTrue(c.passed, "\(backend.name) relu \(relu) \(what): \(c)")
                }
            }
        }
    }

    /// Launch detection, the single-process communicator, the local rank's default device and the
    /// PoCL thread share.
    func testLaunchDetectionAndDefaults() throws {
        XCTAssertTrue(Distributed.launchedByMPI(["OMPI_COMM_WORLD_SIZE": "2"]))
        XCTAssertFalse(Distributed.launchedByMPI([:]))
        XCTAssertTrue(try Distributed.start([:]) is SingleProcess)
        XCTAssertEqual(Distributed.localPlacement(["OMPI_COMM_WORLD_LOCAL_RANK": "3", "OMPI_COMM_WORLD_LOCAL_SIZE": "8"]).rank, 3)
        let single = SingleProcess()
        var values: [Double] = [1, 2]
        try single.allReduceSum(&values)
        XCTAssertEqual(values, [1, 2])
        XCTAssertEqual(try single.allGather(7), [7])
        // Without GPUs every local rank gets the first OpenCL device (PoCL), else the reference.
        let devices = (try? SGEOpenCL.Devices.all()) ?? []
        if !devices.contains(where: \.isGPU) {
            XCTAssertEqual(try DeviceSelection.resolve(nil, devices: devices, localRank: 1).0?.globalIndex, devices.first?.globalIndex)
        }
        // cores ÷ local ranks PoCL threads, unless set.
        let saved = ProcessInfo.processInfo.environment["POCL_MAX_PTHREAD_COUNT"]
        defer { if let saved { setenv("POCL_MAX_PTHREAD_COUNT", saved, 1) } else { unsetenv("POCL_MAX_PTHREAD_COUNT") } }
        unsetenv("POCL_MAX_PTHREAD_COUNT")
        let threads = Distributed.sharePoCLThreads(localSize: 2)
        XCTAssertEqual(threads, max(1, ProcessInfo.processInfo.activeProcessorCount / 2))
        XCTAssertEqual(ProcessInfo.processInfo.environment["POCL_MAX_PTHREAD_COUNT"], threads.map(String.init))
        XCTAssertNil(Distributed.sharePoCLThreads(localSize: 2), "a value already set is kept")
    }

    // MARK: - mpirun -np 2

    func tinyData() throws -> String {
        let dir = NSTemporaryDirectory() + "sge-mpi-data-\(UUID().uuidString)"
        // 5×5 images: the small model's stages see 5, 3 and 2 pixels (SGE needs H·W ≥ 2).
        try CLI.writeDataset(dir: dir, train: 640, test: 40, size: 5)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    func trainArgs(_ data: String, out: String, batch: Int, device: String, steps: Int = 5) -> [String] {
        ["train", "--device", device, "--data", data, "--batch-size", String(batch), "--steps-per-epoch", String(steps), "--epochs", "1",
         "--no-augment", "--test-subset", "40", "--out", out, "--overwrite"]
    }

    /// Five steps of 2 ranks × 64 against 1 × 128. Winograd's weight gradient is ruled out here
    /// (SGE_CONV_WINOGRAD_GW=0): its tile sums are split by the per-rank batch, so it rounds differently
    /// at 64 and 128 images (≈2e-7 relative); on this data one BatchNorm output sits 5e-8 from zero at
    /// step 2, that rounding flips its ReLU, and five steps carry the flip to 0.38. The same happens to
    /// any path given 3e-6 of noise, so it tests the data, not the path; the path itself is checked in
    /// a 2-rank run after one step (testTwoRanksWinogradWeightGradEqualsReferenceAfterOneStepOnPoCL).
    func equivalence(device: String, rtol: Double) throws {
        let data = try tinyData()
        let one = data + "/one", two = data + "/two"
        let env = ["SGE_CONV_WINOGRAD_GW": "0"]
        let single = try CLI.run(trainArgs(data, out: one, batch: 128, device: device), env: env)
        XCTAssertEqual(single.status, 0, single.output)
        let ddp = try MPI.run(ranks: 2, trainArgs(data, out: two, batch: 64, device: device) + ["--sync-bn"], env: env)
        XCTAssertEqual(ddp.status, 0, ddp.output)
        XCTAssertTrue(ddp.stderr.contains("rank 1: device"), ddp.output)
        let (worst, name) = try MPI.maxRelativeDifference(two + "/checkpoint.safetensors", one + "/checkpoint.safetensors")
        print("2 ranks × 64 (--sync-bn) vs 1 × 128 on \(device): largest relative difference \(worst) (\(name))")
        XCTAssertLessThanOrEqual(worst, rtol, "\(name)\n\(ddp.output)")
        let meta = try SafeTensors.read(path: two + "/checkpoint.safetensors").metadata
        XCTAssertEqual(meta["world_size"], "2")
    }

    func testTwoRanksEqualOneProcessOnReference() throws {
        try equivalence(device: "reference", rtol: Self.referenceEquivalenceRTol)
    }

    func testTwoRanksEqualOneProcessOnPoCL() throws {
        _ = try testDevice()
        try equivalence(device: "0", rtol: Self.poclEquivalenceRTol)
    }

    /// Winograd's weight gradient (`winogradFull`, SGE_CONV_WINOGRAD_GW=1) in a 2-rank --sync-bn run
    /// (64 images per rank, gradients read back and written averaged by the host) against one
    /// reference process at 128, after ONE step: the momentum buffers are then the averaged
    /// gradients themselves. One step because the 5-step comparison above is not a gradient check
    /// under float rounding: in a 5-step run with winograd-full, one pre-activation of layer3.0.bn1
    /// (channel 19, step 2) lies 5e-8 from the fused ReLU's kink, and rounding differences of ~2e-7
    /// in the step-1 weight gradients (Winograd's split of the tiles over 4 work-items vs 1, say)
    /// put it on the other side; the flipped mask changes that channel's gradient by 2.5% and the
    /// 5-step checkpoints by 0.38 relative. The default path with 3e-6 random noise added to its
    /// step-1 conv gradients fails the same way (0.382 in the same tensor). Measured here: 1.1e-6.
    func testTwoRanksWinogradWeightGradEqualsReferenceAfterOneStepOnPoCL() throws {
        _ = try testDevice()
        let data = try tinyData()
        let one = data + "/one", two = data + "/two"
        let reference = try CLI.run(trainArgs(data, out: one, batch: 128, device: "reference", steps: 1))
        XCTAssertEqual(reference.status, 0, reference.output)
        let ddp = try MPI.run(ranks: 2, trainArgs(data, out: two, batch: 64, device: "0", steps: 1) + ["--sync-bn"],
                              env: ["SGE_CONV_WINOGRAD_GW": "1", "SGE_VERBOSE": "1"])
        XCTAssertEqual(ddp.status, 0, ddp.output)
        // Both ranks ran the three 3×3 stride-1 convolutions' backward on winograd-full.
        let full = ddp.stderr.split(separator: "\n").filter { $0.contains("backward: winograd-full") }
        XCTAssertEqual(full.count, 6, ddp.output)
        let (worst, name) = try MPI.maxRelativeDifference(two + "/checkpoint.safetensors", one + "/checkpoint.safetensors")
        print("2 ranks × 64 (--sync-bn, winograd-full) vs reference 1 × 128 after 1 step: largest relative difference \(worst) (\(name))")
        XCTAssertLessThanOrEqual(worst, Self.poclEquivalenceRTol, "\(name)\n\(ddp.output)")
    }

    /// Without --sync-bn the ranks' BatchNorm statistics differ, but the averaged gradients keep
    /// every rank's parameters identical; a resume with another number of ranks is refused.
    func testRanksStayIdenticalWithoutSyncBN() throws {
        let data = try tinyData()
        let device = (try? testDevice()) != nil ? "0" : "reference"
        let r = try MPI.run(ranks: 2, trainArgs(data, out: data + "/run", batch: 32, device: device, steps: 3),
                            env: ["SGE_PRINT_PARAMETER_HASH": "1"])
        XCTAssertEqual(r.status, 0, r.output)
        let hashes = r.stderr.split(separator: "\n").filter { $0.contains("parameter hash") }.map { $0.split(separator: " ").last! }
        XCTAssertEqual(hashes.count, 2, r.output)
        XCTAssertEqual(Set(hashes).count, 1, "ranks differ: \(r.output)")
        XCTAssertFalse(r.stderr.contains("rank 1: error"), r.output)
        let lines = try String(contentsOfFile: data + "/run/metrics.jsonl", encoding: .utf8)
        XCTAssertTrue(lines.contains("\"allreduce_bytes_per_step\""), lines)
        XCTAssertTrue(lines.contains("\"ranks\":2"), lines)
        // Resuming with one process is refused with a message naming both counts.
        let resume = try CLI.run(trainArgs(data, out: data + "/run", batch: 32, device: device, steps: 3)
                                 + ["--resume", data + "/run/checkpoint.safetensors", "--epochs", "2"])
        XCTAssertNotEqual(resume.status, 0)
        XCTAssertTrue(resume.stderr.contains("2 rank(s)"), resume.output)
    }

    /// A failure on rank 1 ends the whole job non-zero within seconds, naming the rank.
    func testFailureOnOneRankEndsEveryRank() throws {
        let data = try tinyData()
        let start = Date()
        let r = try MPI.run(ranks: 2, trainArgs(data, out: data + "/run", batch: 32, device: "reference", steps: 3),
                            env: ["SGE_TEST_FAIL_RANK": "1", "SGE_TEST_FAIL_STEP": "1"], timeout: 120)
        XCTAssertNotEqual(r.status, 0, r.output)
        XCTAssertTrue(r.stderr.contains("sge: rank 1: error:"), r.output)
        XCTAssertTrue(r.stderr.contains("injected failure"), r.output)
        XCTAssertLessThan(Date().timeIntervalSince(start), 60)
    }

    /// A NaN loss on one rank is an error on every rank.
    func testNaNLossOnOneRankEndsTheJob() throws {
        let data = try tinyData()
        let r = try MPI.run(ranks: 2, trainArgs(data, out: data + "/run", batch: 32, device: "reference", steps: 3),
                            env: ["SGE_TEST_NAN_RANK": "1"], timeout: 120)
        XCTAssertNotEqual(r.status, 0, r.output)
        XCTAssertTrue(r.stderr.contains("loss is nan"), r.output)
    }

    /// Ctrl-C to mpirun (forwarded to every rank as SIGTERM, SIGKILL following): the ranks stop at
    /// the same step and rank 0 writes the checkpoint before the kill. mpirun sends SIGCONT, then
    /// SIGTERM and SIGKILL each odls_base_sigkill_timeout seconds later (default 1: shorter than a
    /// reference-backend step in a debug build), so the test sets it to 8, as docs/distributed.md
    /// advises for long steps.
    func testCtrlCToMpirunWritesTheCheckpoint() throws {
        let data = try tinyData()
        let mpirun = try MPI.mpirun(), sge = try CLI.binary()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: mpirun)
        p.arguments = ["--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", "2", sge]
            + trainArgs(data, out: data + "/run", batch: 32, device: "reference", steps: 10) + ["--epochs", "3"]
        var environment = ProcessInfo.processInfo.environment
        environment["OMPI_MCA_odls_base_sigkill_timeout"] = "8"
        environment["SGE_DEVICE"] = nil
        p.environment = environment
        let log = data + "/stderr.txt"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        p.standardError = handle
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { p.terminate() } }
        var text = ""
        let started = Date()
        while p.isRunning && !text.contains("training 3 epochs") && Date().timeIntervalSince(started) < 60 {
            usleep(100_000)
            text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        }
        sleep(3)  // a few steps in, every rank's handler installed
        XCTAssertTrue(p.isRunning, "the run ended before Ctrl-C: \(text)")
        p.interrupt()
        let deadline = Date().addingTimeInterval(60)
        while p.isRunning && Date() < deadline { usleep(100_000) }
        XCTAssertFalse(p.isRunning, "mpirun did not exit within 60 s of Ctrl-C")
        try? handle.close()
        text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        XCTAssertTrue(text.contains("stopped at epoch"), text)
        XCTAssertTrue(FileManager.default.fileExists(atPath: data + "/run/checkpoint.safetensors"), text)
    }

    /// Ranks started with different options are refused before training, naming the rank.
    func testMismatchedOptionsAreRefused() throws {
        let data = try tinyData()
        let base = trainArgs(data, out: data + "/run", batch: 32, device: "reference", steps: 3)
        let r = try MPI.run(ranks: 2, [], apps: [base, base + ["--lr", "0.05"]], timeout: 120)
        XCTAssertNotEqual(r.status, 0, r.output)
        XCTAssertTrue(r.stderr.contains("rank(s) 1 differ from rank 0"), r.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: data + "/run/checkpoint.safetensors"))
    }
}
