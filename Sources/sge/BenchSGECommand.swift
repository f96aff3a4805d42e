import ArgumentParser
import Foundation
import SGEBench
import SGEEngine
import SGEOpenCL
import SGETensor

/// `sge bench sge`: SGE forward and backward at ResNet stage shapes vs the device's copy bandwidth.
struct BenchSGE: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sge",
        abstract: "Time SGE forward/backward and compare with the measured float4 copy bandwidth.",
        discussion: """
            Bytes counted: forward reads x and writes out (2 x 4 bytes per element); backward reads x and \
            grad_out and writes grad_x (3 x 4 bytes per element). Times are the median of --repeats runs after \
            --warmup runs, from OpenCL profiling events (backward: from the start of sge_backward to the end of \
            sge_param_grad), writing into the same output tensors every run (as with a buffer pool; a fresh \
            output's first-touch page faults are not the kernel's cost). The copy bandwidth is copy_float4 \
            on two buffers of at least 64 MiB and 4x the device's global-memory cache (so it measures memory, \
            not the cache), with the best of the driver's work-group size and 64, 256, 1024 (chosen once \
            at the start); it is timed again in every round, just before that round's forward and \
            backward, and each row's fraction is its GB/s over the median copy GB/s of the same rounds, \
            so a slow phase of a shared machine moves both sides. The same is done for copy_float4_stream, \
            the copy with streaming stores: on a CPU a plain store first reads its destination line, so a \
            plain copy moves 3 bytes per byte copied and a streaming one 2. SGE's CPU kernels stream their \
            outputs where that measured faster, so on CPU drivers the streaming copy is the stricter reference; \
            fraction_of_copy (the issue's measure) stays against copy_float4. Every kernel variant timed is first \
            checked against the reference backend. SGE_BENCH_SAMPLES=1 prints every timed sample to stderr.
            """)

    @OptionGroup var options: DeviceOptions

    @Option(help: "Shapes N,C,H,W separated by ';' (default: the four ResNet stages at batch 8).")
    var shapes: String = "8,256,56,56;8,512,28,28;8,1024,14,14;8,2048,7,7"

    @Option(help: "Groups G.")
    var groups: Int = 64

    @Option(help: "Kernel paths, comma-separated: automatic, registers, local, streaming (each is timed).")
    var path: String = "automatic"

    @Option(name: .customLong("work-group"), help: "Work-group size (a power of two; default: the device default).")
    var workGroup: Int?

    @Flag(help: "Time work-group sizes 1 (the narrow variant) and 16...1024 (the wide ones) on the register, local and streaming paths (tuning).")
    var sweep = false

    @Option(help: "Timed rounds (median reported; at least 5).")
    var repeats: Int = 11

    @Option(help: "Untimed warm-up rounds (on PoCL the first few runs of a kernel are up to 30% slower).")
    var warmup: Int = 5

    @Flag(help: "Print a JSON array instead of a table: per row op, direction, shape, groups, ms, gbps, fraction_of_copy, copy_gbps (the copy in the same rounds), copy_alone_gbps (the copy timed back-to-back at the start), stream_copy_gbps and fraction_of_stream_copy (the same for the streaming-store copy), device, path, work_group_size.")
    var json = false

    func run() throws {
        try runCLI {
            guard repeats >= 5 else { throw SGEError.invalidArgument("--repeats must be at least 5, got \(repeats)") }
            guard warmup >= 0 else { throw SGEError.invalidArgument("--warmup must be >= 0, got \(warmup)") }
            let chosenPaths = try path.split(separator: ",").map { name -> SGEPath in
                guard let p = SGEPath(rawValue: name.trimmingCharacters(in: .whitespaces)) else {
                    throw SGEError.invalidArgument("--path takes automatic, registers, local or streaming (comma-separated), got '\(name)'")
                }
                return p
            }
            guard !chosenPaths.isEmpty else { throw SGEError.invalidArgument("--path is empty") }
            let shapeList = try parseShapes(shapes)
            let choice = try options.choose(quiet: json)
            guard let info = choice.info, let backend = choice.backend as? OpenCLBackend else {
                throw SGEError.invalidArgument("bench needs an OpenCL device; the reference backend has no profiling events")
            }
            let probe = try BenchTiming.CopyProbe(backend, warmup: warmup, repeats: repeats)
            // The streaming-store copy lives in its own program (Kernels/bandwidth.cl); a driver that
            // cannot build or run it loses only these columns.
            let streamProbe: BenchTiming.CopyProbe?
            do {
                streamProbe = try BenchTiming.CopyProbe(backend, kernel: .stream, sharing: probe, warmup: warmup, repeats: repeats)
            } catch {
                FileHandle.standardError.write(Data("bench sge: the streaming-store copy is unavailable, its columns are left out: \(error)\n".utf8))
                streamProbe = nil
            }
            var configs: [(SGEPath, Int?)] = chosenPaths.map { ($0, workGroup) }
            if sweep {
                configs = []
                for wg in [1, 16, 32, 64, 128, 256, 512, 1024] where wg <= info.maxWorkGroupSize {
                    for p in [SGEPath.registers, .local, .streaming]
                    where p != .registers || (wg > 1 && wg <= OpenCLBackend.sgeRegisterMaxWorkGroup) { configs.append((p, wg)) }
                }
            }
            for (p, wg) in configs { try validate(backend, path: p, workGroupSize: wg) }
            var rows: [SGEBenchRow] = []
            if !json {
                print("device: \(info.globalIndex): \(info.name); copy_float4 bandwidth \(String(format: "%.1f", probe.aloneGBps)) GB/s "
                      + "(work-group \(probe.local.map(String.init) ?? "default")), streaming-store copy "
                      + (streamProbe.map { String(format: "%.1f GB/s", $0.aloneGBps) } ?? "unavailable")
                      + "; each row's copies are re-timed in its own rounds")
                print(pad("shape", 18) + " " + pad("G", 4, left: true) + " " + pad("direction", 9) + " " + pad("path", 19) + " "
                      + pad("WG", 4, left: true) + " " + pad("ms", 9, left: true) + " " + pad("GB/s", 8, left: true) + " " + pad("copy GB/s", 9, left: true)
                      + " " + pad("of copy", 8, left: true) + " " + pad("stream GB/s", 11, left: true) + " " + pad("of stream", 9, left: true))
            }
            for shape in shapeList {
                let n = shape.count
                var rng = SeededRNG(seed: 42)
                let x = try backend.tensor((0..<n).map { _ in rng.normal() }, shape, label: "x")
                let go = try backend.tensor((0..<n).map { _ in rng.normal() }, shape, label: "grad_out")
                let w = try backend.tensor((0..<groups).map { _ in rng.normal() }, [groups], label: "weight")
                let b = try backend.tensor((0..<groups).map { _ in rng.normal() }, [groups], label: "bias")
                let gw = backend.zeros([groups]), gb = backend.zeros([groups])
                for (p, wg) in configs {
                    if configs.count > 1 {
                        // A sweep or a list of paths covers every (path, work-group) pair; one that cannot run
                        // this shape (a slab larger than local memory or the registers) is reported and left
                        // out rather than ending the run.
                        var reason = p == .local ? backend.sgeLocalPathUnavailable(shape: shape, groups: groups, workGroupSize: wg) : nil
                        if reason == nil {
                            for backward in [false, true] {
                                do { _ = try backend.sgeResolvedPlan(shape: shape, groups: groups, backward: backward, path: p, workGroupSize: wg) }
                                catch { reason = "\(error)" }
                            }
                        }
                        if let reason {
                            FileHandle.standardError.write(Data("bench sge: \(shape) \(p.rawValue) path, work-group \(wg.map(String.init) ?? "default"): skipped: \(reason)\n".utf8))
                            continue
                        }
                    }
                    // Outputs are reused across runs, as a training loop with a buffer pool would: a fresh
                    // 25 MB buffer costs more in first-touch page faults than the kernel itself on PoCL.
                    var saved: SGESaved?
                    var out: Tensor?, gx: Tensor?
                    var copyMs: [Double] = [], streamMs: [Double] = [], fwdMs: [Double] = [], bwdMs: [Double] = []
                    for round in 0..<(warmup + repeats) {
                        // The streaming copy first, so the plain copy is what runs just before SGE
                        // (and leaves the caches as the plain-copy reference always has).
                        let sc = try streamProbe?.time()
                        let c = try probe.time()
                        let r = try backend.sgeForward(x, weight: w, bias: b, groups: groups, normalize: true, path: p, workGroupSize: wg,
                                                       reuse: out)
                        out = r.out
                        saved = r.saved
                        let f = try backend.lastEvent!.milliseconds()
                        let rb = try backend.sgeBackward(go, x: x, weight: w, bias: b, groups: groups, normalize: true, saved: saved!,
                                                         gradWeight: gw, gradBias: gb, path: p, workGroupSize: wg, reuse: gx)
                        gx = rb.gradX
                        let bw = try CLEvent.span(rb.events.first!, rb.events.last!)
                        if round >= warmup {
                            copyMs.append(c)
                            if let sc { streamMs.append(sc) }
                            fwdMs.append(f)
                            bwdMs.append(bw)
                        }
                    }
                    let copy = probe.gbps(BenchTiming.Stats(copyMs).median)
                    let streamCopy = streamProbe.map { $0.gbps(BenchTiming.Stats(streamMs).median) }
                    let fwd = report(fwdMs), bwd = report(bwdMs)
                    for (direction, ms, bytes) in [("forward", fwd, 2 * 4 * n), ("backward", bwd, 3 * 4 * n)] {
                        let used = try backend.sgeResolvedPlan(shape: shape, groups: groups, backward: direction == "backward",
                                                               path: p, workGroupSize: wg)
                        let wgUsed = used.workGroupSize
                        let pathName = p == used.path ? p.rawValue : "\(p.rawValue)/\(used.path.rawValue)"
                        let gbps = Double(bytes) / ms / 1e6
                        rows.append(SGEBenchRow(direction: direction, shape: shape.dims, groups: groups, ms: ms, gbps: gbps, copyGbps: copy,
                                                copyAloneGbps: probe.aloneGBps, device: info.name, path: pathName, workGroupSize: wgUsed,
                                                streamCopyGbps: streamCopy))
                        if !json {
                            print(pad(shape.description, 18) + String(format: " %4d ", groups) + pad(direction, 9) + " " + pad(pathName, 19)
                                  + String(format: " %4d %9.3f %8.2f %9.1f %7.0f%%", wgUsed, ms, gbps, copy, 100 * gbps / copy)
                                  + (streamCopy.map { String(format: " %11.1f %8.0f%%", $0, 100 * gbps / $0) } ?? " " + pad("-", 11, left: true)
                                     + " " + pad("-", 9, left: true)))
                        }
                    }
                }
            }
            if json {
                print(try jsonText(rows))
            }
        }
    }

    func parseShapes(_ text: String) throws -> [Shape] {
        try text.split(separator: ";").map { part in
            let dims = part.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard dims.count == 4, dims.allSatisfy({ $0 > 0 }) else {
                throw SGEError.invalidArgument("--shapes: '\(part)' is not N,C,H,W with positive sizes")
            }
            return Shape(dims)
        }
    }

    /// The median of `samples` (with SGE_BENCH_SAMPLES set, every sample goes to stderr as well).
    func report(_ samples: [Double]) -> Double {
        let s = BenchTiming.Stats(samples)
        if ProcessInfo.processInfo.environment["SGE_BENCH_SAMPLES"] != nil {
            FileHandle.standardError.write(Data((s.samples.map { String(format: "%.3f", $0) }.joined(separator: " ") + "\n").utf8))
        }
        return s.median
    }

    /// Checks one kernel variant against the reference before it is timed.
    func validate(_ backend: OpenCLBackend, path: SGEPath, workGroupSize: Int?) throws {
        let shape: Shape = [2, 64, 7, 9]
        let g = 8
        var rng = SeededRNG(seed: 3)
        let xv = (0..<shape.count).map { _ in rng.normal() }, gov = (0..<shape.count).map { _ in rng.normal() }
        let wv = (0..<g).map { _ in rng.normal() }, bv = (0..<g).map { _ in rng.normal() }
        let ref = ReferenceBackend()
        let (rout, rsaved) = try ref.sgeForward(try ref.tensor(xv, shape), weight: try ref.tensor(wv, [g]), bias: try ref.tensor(bv, [g]),
                                                groups: g, normalize: true)
        let rgx = try ref.sgeBackward(try ref.tensor(gov, shape), x: try ref.tensor(xv, shape), weight: try ref.tensor(wv, [g]),
                                      bias: try ref.tensor(bv, [g]), groups: g, normalize: true, saved: rsaved,
                                      gradWeight: ref.zeros([g]), gradBias: ref.zeros([g]))
        let x = try backend.tensor(xv, shape), w = try backend.tensor(wv, [g]), b = try backend.tensor(bv, [g])
        let (out, saved) = try backend.sgeForward(x, weight: w, bias: b, groups: g, normalize: true, path: path, workGroupSize: workGroupSize)
        let gx = try backend.sgeBackward(try backend.tensor(gov, shape), x: x, weight: w, bias: b, groups: g, normalize: true, saved: saved,
                                         gradWeight: backend.zeros([g]), gradBias: backend.zeros([g]), path: path,
                                         workGroupSize: workGroupSize).gradX
        for (name, got, want) in [("out", try out.read(), try rout.read()), ("grad_x", try gx.read(), try rgx.read())] {
            let scale = want.reduce(Float(0)) { max($0, abs($1)) }
            let err = zip(got, want).reduce(Float(0)) { max($0, $1.0.isFinite ? abs($1.0 - $1.1) : .infinity) }
            guard err <= 1e-4 * max(scale, 1) else {
                throw SGEError.numeric("sge \(path.rawValue) WG=\(workGroupSize.map(String.init) ?? "default") gives \(name) off the reference by \(err)")
            }
        }
    }
}
