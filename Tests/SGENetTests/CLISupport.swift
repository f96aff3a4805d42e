import Foundation
import SGEDeviceTestSupport
import XCTest

/// Running the built `sge` binary as a subprocess, for findings that crash, abort or exhaust memory
/// on bad input: a crash then shows as a failing exit status, not a dead test runner.
enum CLI {
    /// `.build/<config>/sge`, beside the test bundle (`swift test` builds every product first).
    /// `SGE_TEST_BINARY` overrides it (e.g. to run these tests against an older build).
    static func binary(file: String = #filePath) throws -> String {
        if let explicit = ProcessInfo.processInfo.environment["SGE_TEST_BINARY"], !explicit.isEmpty { return explicit }
        var candidates: [URL] = []
        // On Linux the test runner is `.build/<triple>/<config>/sgePackageTests.xctest`; on macOS a
        // bundle in that folder.
        for bundle in Bundle.allBundles + [Bundle.main] {
            var url = bundle.bundleURL
            while url.pathComponents.count > 1 {
                if url.pathExtension == "xctest" { candidates.append(url.deletingLastPathComponent().appendingPathComponent("sge")) }
                url.deleteLastPathComponent()
            }
        }
        let argv0 = URL(fileURLWithPath: CommandLine.arguments.first ?? "")
        candidates.append(argv0.deletingLastPathComponent().appendingPathComponent("sge"))
        let root = URL(fileURLWithPath: file).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        candidates.append(root.appendingPathComponent(".build/debug/sge"))
        candidates.append(root.appendingPathComponent(".build/release/sge"))
        for c in candidates where FileManager.default.isExecutableFile(atPath: c.path) { return c.path }
        throw missingDevice("the sge binary was not found (looked in \(candidates.map(\.path))); build it with `swift build`")
    }

    struct Result {
        var status: Int32
        /// Whether the process ended by a signal (a crash), with `status` the signal number.
        var signaled: Bool
        var stdout: String
        var stderr: String
        var output: String { stdout + stderr }
    }

    /// Runs `sge args...` in `cwd` with `env` added, under an address-space limit of
    /// `memoryLimitMiB` (so a runaway allocation fails fast instead of exhausting the machine).
    static func run(_ args: [String], cwd: String? = nil, env: [String: String] = [:], memoryLimitMiB: Int = 6144,
                    timeout: TimeInterval = 240) throws -> Result {
        try runCommand(["/bin/sh", "-c", "ulimit -v \(memoryLimitMiB * 1024) 2>/dev/null; exec \"$0\" \"$@\"", try binary()] + args,
                       cwd: cwd, env: env, timeout: timeout, what: "sge " + args.joined(separator: " "))
    }

    /// Runs `command` (argv[0] an absolute path) in `cwd` with `env` added (SGE_DEVICE removed), and
    /// fails the test if it runs past `timeout`. Output goes to files read after exit, so a chatty
    /// child can never block on a full pipe.
    static func runCommand(_ command: [String], cwd: String? = nil, env: [String: String] = [:], timeout: TimeInterval,
                           what: String? = nil) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: command[0])
        p.arguments = Array(command.dropFirst())
        var environment = ProcessInfo.processInfo.environment
        environment["SGE_DEVICE"] = nil
        for (k, v) in env { environment[k] = v }
        p.environment = environment
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        let base = (NSTemporaryDirectory() as NSString).appendingPathComponent("sge-cli-out-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: base + ".out", contents: nil)
        _ = FileManager.default.createFile(atPath: base + ".err", contents: nil)
        defer {
            try? FileManager.default.removeItem(atPath: base + ".out")
            try? FileManager.default.removeItem(atPath: base + ".err")
        }
        let outHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: base + ".out"))
        let errHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: base + ".err"))
        p.standardOutput = outHandle
        p.standardError = errHandle
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(50_000) }
        if p.isRunning {
            p.terminate()
            p.waitUntilExit()
            XCTFail("\(what ?? command.joined(separator: " ")) did not finish in \(Int(timeout)) s")
        }
        p.waitUntilExit()
        try? outHandle.close()
        try? errHandle.close()
        let outData = FileManager.default.contents(atPath: base + ".out") ?? Data()
        let errData = FileManager.default.contents(atPath: base + ".err") ?? Data()
        return Result(status: p.terminationStatus, signaled: p.terminationReason == .uncaughtSignal,
                      stdout: String(decoding: outData, as: UTF8.self), stderr: String(decoding: errData, as: UTF8.self))
    }

    /// Writes a tiny Fashion-MNIST-shaped IDX dataset (uncompressed) into `dir`: `train` and
    /// `test` images of `size`×`size`, labels cycling through the 10 classes.
    static func writeDataset(dir: String, train: Int, test: Int, size: Int) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        func be32(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
        for (prefix, count) in [("train", train), ("t10k", test)] {
            var images = [0, 0, 8, 3] + be32(count) + be32(size) + be32(size)
            images.reserveCapacity(images.count + count * size * size)
            for i in 0..<count {
                let k = i % 10
                for y in 0..<size { for x in 0..<size { images.append(UInt8((x * 7 + y * 3 + k * 25 + i) % 256)) } }
            }
            let labels = [0, 0, 8, 1] + be32(count) + (0..<count).map { UInt8($0 % 10) }
            try Data(images).write(to: URL(fileURLWithPath: (dir as NSString).appendingPathComponent("\(prefix)-images-idx3-ubyte")))
            try Data(labels).write(to: URL(fileURLWithPath: (dir as NSString).appendingPathComponent("\(prefix)-labels-idx1-ubyte")))
        }
    }
}
