import Foundation
import SGEEngine
import SGENet
import SGETensor
import SGEDeviceTestSupport
import XCTest

/// The seven findings of issue 20 through the `sge` binary: each must end with a clear message and
/// a non-zero exit (or, for the program cache, recover), never a crash, and lose nothing.
final class CLIReliabilityTests: XCTestCase {
    var dir: String!
    var data: String { (dir as NSString).appendingPathComponent("data") }

    override func setUpWithError() throws {
        dir = (NSTemporaryDirectory() as NSString).appendingPathComponent("sge-cli-\(UUID().uuidString)")
        try CLI.writeDataset(dir: (dir as NSString).appendingPathComponent("data"), train: 32, test: 16, size: 8)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    func path(_ name: String) -> String { (dir as NSString).appendingPathComponent(name) }

    /// A quick run on the tiny data set on the reference backend (no kernel builds): 2 steps of 4.
    func trainArgs(_ extra: [String]) -> [String] {
        ["train", "--device", "reference", "--data", data, "--batch-size", "4", "--epochs", "1", "--steps-per-epoch", "2"] + extra
    }

    func assertCleanFailure(_ r: CLI.Result, contains needles: [String], line: UInt = #line) {
        XCTAssertFalse(r.signaled, "sge crashed (signal \(r.status)): \(r.output)", line: line)
        XCTAssertNotEqual(r.status, 0, "sge must fail: \(r.output)", line: line)
        XCTAssertFalse([134, 137, 139].contains(r.status), "exit \(r.status) is a crash: \(r.output)", line: line)
        for n in needles { XCTAssertTrue(r.stderr.contains(n), "stderr must mention '\(n)': \(r.output)", line: line) }
    }

    /// Finding 1: a checkpoint whose tensor bytes were overwritten (header valid) is refused by eval.
    func testEvalRefusesACorruptedCheckpoint() throws {
        let run = path("run")
        let trained = try CLI.run(trainArgs(["--out", run]))
        XCTAssertEqual(trained.status, 0, trained.output)
        let ckpt = (run as NSString).appendingPathComponent("checkpoint.safetensors")
        var bytes = try Data(contentsOf: URL(fileURLWithPath: ckpt))
        let headerLength = Int(bytes.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        let header = try JSONSerialization.jsonObject(with: bytes[8..<(8 + headerLength)]) as! [String: Any]
        let offsets = (header["layer3.0.conv2.weight"] as! [String: Any])["data_offsets"] as! [Int]
        for i in (8 + headerLength + offsets[0])..<(8 + headerLength + offsets[1]) { bytes[i] = 0xFF }  // NaN patterns
        try bytes.write(to: URL(fileURLWithPath: ckpt))
        let r = try CLI.run(["eval", "--device", "reference", "--data", data, ckpt])
        assertCleanFailure(r, contains: ["layer3.0.conv2.weight"])
        XCTAssertFalse(r.stdout.contains("accuracy"), "no result may be printed for a corrupted checkpoint: \(r.stdout)")
    }

    /// Finding 2: a golden file with NaN in `out` must fail check-golden, not print "all PASS".
    func testCheckGoldenFailsOnANaNGolden() throws {
        var file = try SafeTensors.read(path: fixturesDirectory().appendingPathComponent("golden/small_3x3.safetensors").path)
        file.tensors["out"]!.data[17] = .nan
        let golden = path("nan_golden.safetensors")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try file.write(path: golden)
        let r = try CLI.run(["check-golden", "--device", "reference", golden])
        XCTAssertFalse(r.signaled, r.output)
        XCTAssertEqual(r.status, 1, r.output)
        XCTAssertFalse(r.stdout.contains("all PASS"), r.stdout)
        XCTAssertTrue(r.stdout.contains("out[17]"), r.stdout)
    }

    /// Finding 3: program-cache files truncated by one byte are detected, rebuilt and replaced.
    func testTruncatedProgramCacheIsRebuiltNotCrashedOn() throws {
        guard (try? DeviceSelection.choose())?.info != nil else { throw missingDevice("no OpenCL device: no program cache to damage") }
        let cache = path("cache")
        let env = ["XDG_CACHE_HOME": cache, "SGE_VERBOSE": "1"]
        let golden = fixturesDirectory().appendingPathComponent("golden/small_3x3.safetensors").path
        let first = try CLI.run(["check-golden", "--device", "0", golden], env: env)
        XCTAssertEqual(first.status, 0, first.output)
        let programs = (cache as NSString).appendingPathComponent("sge/programs")
        let files = try FileManager.default.contentsOfDirectory(atPath: programs).filter { $0.hasSuffix(".bin") }
        XCTAssertFalse(files.isEmpty, "the first run must fill the cache")
        var sizes: [String: Int] = [:]
        for f in files {
            let p = (programs as NSString).appendingPathComponent(f)
            let bytes = try Data(contentsOf: URL(fileURLWithPath: p))
            sizes[f] = bytes.count
            try bytes.dropLast().write(to: URL(fileURLWithPath: p))
        }
        let second = try CLI.run(["check-golden", "--device", "0", golden], env: env)
        XCTAssertFalse(second.signaled, "crashed on a truncated cache: \(second.output)")
        XCTAssertEqual(second.status, 0, second.output)
        XCTAssertTrue(second.stdout.contains("all PASS"), second.output)
        XCTAssertTrue(second.stderr.contains("rejected"), "the damaged file must be reported under SGE_VERBOSE: \(second.stderr)")
        for f in files {
            // Replaced by a whole file: header "SGEPRG1\n", then the binary's length, which must
            // match what follows the 24-byte header (PoCL's binaries differ in size between builds).
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: (programs as NSString).appendingPathComponent(f))))
            XCTAssertEqual(Array(bytes.prefix(8)), Array("SGEPRG1\n".utf8), f)
            let length = (0..<8).reduce(0) { $0 | Int(bytes[8 + $1]) << (8 * $1) }
            XCTAssertEqual(length, bytes.count - 24, "\(f) must be replaced by a whole binary (was \(sizes[f]! - 1) bytes after truncation)")
        }
        let third = try CLI.run(["check-golden", "--device", "0", golden], env: env)
        XCTAssertEqual(third.status, 0, third.output)
        XCTAssertTrue(third.stderr.contains("loaded cached program"), third.stderr)
        XCTAssertFalse(third.stderr.contains("rejected"), third.stderr)
    }

    /// Finding 4: a batch far beyond the device's memory is refused before allocating, with the
    /// estimate, the limit and a batch that fits (the subprocess runs under `ulimit -v`, so an
    /// unchecked allocation shows as a crash here instead of exhausting the machine).
    func testOversizedBatchIsRefusedWithABatchThatFits() throws {
        let big = path("big")
        try CLI.writeDataset(dir: big, train: 60000, test: 10, size: 28)
        let r = try CLI.run(["train", "--data", big, "--batch-size", "60000", "--epochs", "1", "--out", path("oom")], memoryLimitMiB: 6144)
        assertCleanFailure(r, contains: ["not enough memory", "batch 60000", "--batch-size"])
        let suggested = r.stderr.components(separatedBy: "--batch-size ").last.flatMap { Int($0.prefix { $0.isNumber }) } ?? 0
        XCTAssertGreaterThan(suggested, 0, r.stderr)
        XCTAssertLessThan(suggested, 60000, r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("oom/checkpoint.safetensors")))
    }

    /// Finding 6: a second run into a folder holding a checkpoint is refused and changes nothing;
    /// --overwrite allows it; without --out each run gets its own folder.
    func testSecondRunIntoAUsedFolderIsRefused() throws {
        let run = path("run")
        let first = try CLI.run(trainArgs(["--out", run]))
        XCTAssertEqual(first.status, 0, first.output)
        let ckpt = (run as NSString).appendingPathComponent("checkpoint.safetensors")
        let metrics = (run as NSString).appendingPathComponent("metrics.jsonl")
        let before = try Data(contentsOf: URL(fileURLWithPath: ckpt)), metricsBefore = try Data(contentsOf: URL(fileURLWithPath: metrics))
        let second = try CLI.run(trainArgs(["--out", run, "--seed", "5"]))
        assertCleanFailure(second, contains: ["already holds a run", "--overwrite", "--resume"])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: ckpt)), before, "the earlier checkpoint must be untouched")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: metrics)), metricsBefore, "the earlier metrics must be untouched")

        let overwritten = try CLI.run(trainArgs(["--out", run, "--seed", "5", "--overwrite"]))
        XCTAssertEqual(overwritten.status, 0, overwritten.output)
        let lines = try String(contentsOfFile: metrics, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "--overwrite starts a fresh metrics file: \(lines)")

        // Without --out: runs/<name>, then runs/<name>-2.
        let cwd = path("cwd")
        try FileManager.default.createDirectory(atPath: cwd, withIntermediateDirectories: true)
        for _ in 0..<2 { XCTAssertEqual(try CLI.run(trainArgs([]), cwd: cwd).status, 0) }
        for name in ["runs/fashion-mnist-default", "runs/fashion-mnist-default-2"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: (cwd as NSString).appendingPathComponent(name + "/checkpoint.safetensors")), name)
        }
    }

    /// An --out that cannot be written is reported before the first step, as a typed error.
    func testUnwritableOutIsFoundBeforeTraining() throws {
        let blocker = path("a-file")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: blocker))
        let r = try CLI.run(trainArgs(["--out", blocker + "/run"]))
        assertCleanFailure(r, contains: ["cannot create the output folder"])
        XCTAssertFalse(r.stderr.contains("epoch 1"), "no training before the check: \(r.stderr)")
    }

    /// Finding 7: an enormous plot is refused with the limit, not a fatal error allocating 30 GB.
    func testHugePlotIsRefused() throws {
        let metrics = path("m.jsonl")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Data(#"{"kind":"epoch","epoch":1,"train_loss":1.0,"test_acc":0.5}"#.utf8).write(to: URL(fileURLWithPath: metrics))
        let r = try CLI.run(["plot", metrics, "--width", "100000", "--height", "100000"], memoryLimitMiB: 4096)
        assertCleanFailure(r, contains: ["100000x100000", "limit"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("m.png")))
    }

    /// Invalid numbers are refused at parse time, before any data is read.
    func testInvalidNumbersAreRefusedAtParseTime() throws {
        for (args, needle) in [(["--sge-init", "nan,1"], "--sge-init"), (["--warmup=-1"], "--warmup"),
                               (["--steps-per-epoch", "0"], "--steps-per-epoch"), (["--lr", "inf"], "--lr"),
                               (["--weight-decay", "nan"], "--weight-decay"), (["--momentum", "1.5"], "--momentum")] {
            let r = try CLI.run(["train", "--device", "reference", "--data", path("missing")] + args)
            XCTAssertEqual(r.status, 2, "\(args): \(r.output)")
            XCTAssertTrue(r.stderr.contains(needle), "\(args): \(r.stderr)")
        }
    }

    /// `study --seed-list` takes distinct seeds and refuses repeats and junk before any data is read.
    func testStudySeedListIsChecked() throws {
        for list in ["2,2", "x", "-1"] {
            let r = try CLI.run(["study", "--device", "reference", "--data", path("missing"), "--seed-list", list])
            XCTAssertNotEqual(r.status, 0, "\(list): \(r.output)")
            XCTAssertTrue(r.stderr.contains("--seed-list"), "\(list): \(r.stderr)")
        }
    }

    /// `eval --json` with a non-finite loss writes null (JSON has no NaN) instead of a raw
    /// NSCocoaErrorDomain 3840 error; the checkpoint itself is intact and finite.
    func testEvalJSONWithANonFiniteLossWritesNull() throws {
        let run = path("run")
        XCTAssertEqual(try CLI.run(trainArgs(["--out", run])).status, 0)
        let ckpt = (run as NSString).appendingPathComponent("checkpoint.safetensors")
        var file = try SafeTensors.read(path: ckpt)
        file.tensors["fc.weight"]!.data = file.tensors["fc.weight"]!.data.map { _ in 3e38 }
        file.tensors["fc.bias"]!.data = file.tensors["fc.bias"]!.data.indices.map { $0 % 2 == 0 ? 3e38 : -3e38 }
        try file.write(path: ckpt)
        let r = try CLI.run(["eval", "--device", "reference", "--data", data, "--json", ckpt])
        XCTAssertEqual(r.status, 0, r.output)
        let object = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        XCTAssertTrue(object?["loss"] is NSNull, r.stdout)
        XCTAssertTrue(r.stderr.contains("warning: the loss is"), r.stderr)
    }

    /// `visualize` refuses grids over the image limit, naming how many images fit.
    func testVisualizeRefusesTooManyImages() throws {
        let run = path("run")
        XCTAssertEqual(try CLI.run(trainArgs(["--out", run])).status, 0)
        let many = path("many")
        try CLI.writeDataset(dir: many, train: 8, test: 300, size: 8)
        let r = try CLI.run(["visualize", "--device", "reference", "--data", many, "--images", "300", "--stats-images", "0",
                             (run as NSString).appendingPathComponent("checkpoint.safetensors")])
        assertCleanFailure(r, contains: ["--images 300", "or fewer", "limit"])
    }
}
