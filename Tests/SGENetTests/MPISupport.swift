import Foundation
import SGETensor
import SGEDeviceTestSupport
import XCTest

/// Running `mpirun ... sge ...` as a subprocess for the data-parallel tests.
enum MPI {
    /// mpirun on PATH (or /usr/bin), else a skip, or a failure under `SGE_REQUIRE_DEVICE=1`.
    static func mpirun() throws -> String {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":").map(String.init) + ["/usr/bin"]
        for dir in path {
            let candidate = (dir as NSString).appendingPathComponent("mpirun")
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw missingDevice("mpirun was not found (install openmpi-bin and libopenmpi-dev)")
    }

    /// `mpirun --allow-run-as-root --oversubscribe -np N sge args...` (or an MPMD `apps` list of
    /// argument lists, one rank each); the result of the whole job.
    static func run(ranks: Int, _ args: [String], apps: [[String]]? = nil, env: [String: String] = [:],
                    timeout: TimeInterval = 240) throws -> CLI.Result {
        let mpirun = try mpirun()
        let sge = try CLI.binary()
        var command = [mpirun, "--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]
        for (k, _) in env { command += ["-x", k] }
        if let apps {
            for (i, a) in apps.enumerated() { command += (i > 0 ? [":"] : []) + ["-np", "1", sge] + a }
        } else {
            command += ["-np", String(ranks), sge] + args
        }
        return try CLI.runCommand(command, env: env, timeout: timeout)
    }

    /// Every tensor of two checkpoints: the largest ∞-norm relative difference
    /// max_i |a_i - b_i| / max(max_i |b_i|, 1e-6) over tensors, and the tensor where it occurs.
    static func maxRelativeDifference(_ a: String, _ b: String) throws -> (Double, String) {
        let fa = try SafeTensors.read(path: a), fb = try SafeTensors.read(path: b)
        XCTAssertEqual(Set(fa.tensors.keys), Set(fb.tensors.keys))
        var worst = (0.0, "")
        for (name, tb) in fb.tensors where !name.hasSuffix("num_batches_tracked") {
            guard let ta = fa.tensors[name] else { continue }
            let scale = max(tb.data.map { abs(Double($0)) }.max() ?? 0, 1e-6)
            let diff = zip(ta.data, tb.data).map { abs(Double($0) - Double($1)) }.max() ?? 0
            if diff / scale > worst.0 { worst = (diff / scale, name) }
        }
        return worst
    }
}
