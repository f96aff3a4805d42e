import Foundation
import SGEOpenCL

/// Times CLBlast SGEMM at a set of shapes on one device and searches parameter sets for
/// Xgemm, XgemmDirect and the GemmRoutine threshold (see the comment at the top of Tuning.swift).
/// Timing: whole calls, clFinish-timed on the host, one validated warm-up run (it also pays the
/// kernel compilation) then the median of `repeats` runs.
public final class GemmTuner {
    public let context: CLContext
    public let shapes: [GemmShape]
    public var repeats = 3
    /// Issue every shape through CLBlast's strided-batched routine (batch 1 for plain GEMMs), so
    /// a candidate costs one CLBlast program build instead of two. Same kernel parameters, same
    /// kernel code apart from the batch index.
    public var oneRoutine = true
    let debugTiming = ProcessInfo.processInfo.environment["SGE_TUNE_DEBUG"] != nil
    /// Progress lines ("candidate i/n ...").
    public var progress: (String) -> Void = { _ in }

    struct Prepared {
        var a: CLBuffer, b: CLBuffer, c: CLBuffer
        var c0: [Float]
        /// Checked C elements: index, expected value, error bound.
        var checks: [(index: Int, value: Double, bound: Double)]
    }
    private var prepared: [Prepared] = []

    /// Allocates and fills the operands of every shape and computes the reference results (in
    /// Double on the host, for the first and last image of a batch; all of C otherwise).
    public init(context: CLContext, shapes: [GemmShape]) throws {
        self.context = context
        self.shapes = shapes
        var seed: UInt64 = 0x5EED
        func values(_ count: Int) -> [Float] {
            (0..<count).map { _ in
                seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return Float(Double(seed >> 40) / Double(1 << 24) * 2 - 1)
            }
        }
        for s in shapes {
            guard s.m > 0, s.n > 0, s.k > 0, s.batch > 0, s.calls > 0 else {
                throw TuningError("GEMM shape \(s) has a non-positive size")
            }
            let aSize = s.m * s.k, bSize = s.k * s.n, cSize = s.m * s.n
            let a = values(aSize * s.calls), b = values(bSize * s.batch * s.calls), c0 = values(cSize * s.batch)
            let u = pow(2.0, -24.0), kTotal = Double(s.k * s.calls)
            var checks: [(Int, Double, Double)] = []
            for image in Set([0, s.batch - 1]).sorted() {
                for i in 0..<s.m {
                    for j in 0..<s.n {
                        var sum = Double(s.beta) * Double(c0[image * cSize + i * s.n + j]), absSum = abs(sum)
                        for call in 0..<s.calls {
                            for l in 0..<s.k {
                                let av = Double(a[call * aSize + (s.transA ? l * s.m + i : i * s.k + l)])
                                let bv = Double(b[(call + image) * bSize + (s.transB ? j * s.k + l : l * s.n + j)])
                                sum += av * bv
                                absSum += abs(av * bv)
                            }
                        }
                        // Float accumulation of kTotal products: |error| ≤ γ·Σ|a·b| with γ ≈ kTotal·u;
                        // doubled for reordering slack. A wrong kernel is off by O(1).
                        checks.append((image * cSize + i * s.n + j, sum, 2 * (kTotal + 2) * u * absSum + 1e-6))
                    }
                }
            }
            let (ab, bb, cb) = (try context.buffer(bytes: a.count * 4), try context.buffer(bytes: b.count * 4), try context.buffer(bytes: c0.count * 4))
            _ = try a.withUnsafeBytes { try context.write(ab, from: $0.baseAddress!, bytes: $0.count, blocking: true) }
            _ = try b.withUnsafeBytes { try context.write(bb, from: $0.baseAddress!, bytes: $0.count, blocking: true) }
            prepared.append(Prepared(a: ab, b: bb, c: cb, c0: c0, checks: checks))
        }
    }

    /// Enqueues shape `i` once (all its calls).
    private func enqueue(_ i: Int) throws {
        let s = shapes[i], p = prepared[i]
        let (ta, tb): (CLContext.Transpose, CLContext.Transpose) = (s.transA ? .yes : .no, s.transB ? .yes : .no)
        let lda = s.transA ? s.m : s.k, ldb = s.transB ? s.k : s.n
        for call in 0..<s.calls {
            if s.batch > 1 || oneRoutine {
                try context.enqueueSgemmStridedBatched(ta, tb, m: s.m, n: s.n, k: s.k, a: p.a, aOffset: call * s.m * s.k, lda: lda, strideA: 0,
                                                       b: p.b, bOffset: call * s.k * s.n, ldb: ldb, strideB: s.k * s.n, beta: s.beta,
                                                       c: p.c, ldc: s.n, strideC: s.m * s.n, batch: s.batch)
            } else {
                try context.enqueueSgemm(ta, tb, m: s.m, n: s.n, k: s.k, a: p.a, aOffset: call * s.m * s.k, lda: lda,
                                         b: p.b, bOffset: call * s.k * s.n, ldb: ldb, beta: s.beta, c: p.c, ldc: s.n)
            }
        }
    }

    /// Runs shape `i` once from its initial C and returns C.
    public func run(_ i: Int) throws -> [Float] {
        let p = prepared[i]
        _ = try p.c0.withUnsafeBytes { try context.write(p.c, from: $0.baseAddress!, bytes: $0.count, blocking: true) }
        try enqueue(i)
        var out = [Float](repeating: 0, count: p.c0.count)
        try out.withUnsafeMutableBytes { try context.read(p.c, into: $0.baseAddress!, bytes: $0.count) }
        return out
    }

    /// Whether `result` (C after one run of shape `i`) matches the reference within its error
    /// bound everywhere checked; NaN or Inf never passes.
    public func isCorrect(_ i: Int, result: [Float]) -> Bool {
        guard result.count == prepared[i].c0.count else { return false }
        for c in prepared[i].checks {
            let v = Double(result[c.index])
            if !v.isFinite || !(abs(v - c.value) <= c.bound) { return false }
        }
        return true
    }

    /// Median seconds of shape `i` with the current parameters, or nil if its result is wrong or
    /// CLBlast rejects the parameters. With `limit`, one timed run slower than it ends early.
    public func time(_ i: Int, limit: Double? = nil) -> Double? {
        do {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let result = try run(i)
            if debugTiming { print(String(format: "  [%@] first run %.3f s", shapes[i].description, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)) }
            guard isCorrect(i, result: result) else {
                if debugTiming { print("  [\(shapes[i].description)] wrong result") }
                return nil
            }
            var times: [Double] = []
            for _ in 0..<max(1, repeats) {
                let start = DispatchTime.now().uptimeNanoseconds
                try enqueue(i)
                try context.finish()
                times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
                if let limit, times.last! > limit { return times.last! }
            }
            return times.sorted()[times.count / 2]
        } catch {
            if debugTiming { print("  [\(shapes[i].description)] \(error)") }
            return nil
        }
    }

    /// Seconds per shape with the current parameters; nil for the whole set when any shape fails.
    /// Stops timing a shape early when it is slower than `limits[s]`.
    public func timeAll(limits: [Double]? = nil) -> [Double]? {
        var result: [Double] = []
        for i in shapes.indices {
            guard let t = time(i, limit: limits?[i]) else { return nil }
            result.append(t)
        }
        return result
    }

    /// Σ count · seconds: the objective the search minimises.
    public func weighted(_ seconds: [Double]) -> Double { zip(shapes, seconds).reduce(0) { $0 + Double($1.0.count) * $1.1 } }

    /// GFLOP/s per shape from seconds.
    public func gflops(_ seconds: [Double]) -> [Double] { zip(shapes, seconds).map { $0.flops / $1 / 1e9 } }

    // MARK: search

    public struct Outcome {
        public var tuning: CLBlastTuning?
        public var before: [Double], after: [Double]  // seconds per shape
        public var tried: Int, rejected: Int, total: Int
        public var threshold: Int
        /// Whether `after` comes from a fresh run of the stored set (else from the search's
        /// per-kernel measurements, when the winner mixes two candidates).
        public var remeasured: Bool
    }

    /// Measured seconds per shape (nil: not measured) of one kernel's parameter set.
    typealias Table = [[String: Int]: [Double?]]

    /// Searches for `budget` seconds of wall time and returns the best combination, re-validated,
    /// with before/after times. Each candidate is one (Xgemm, XgemmDirect, threshold) triple, so one
    /// CLBlast program build (the dominant cost on PoCL: ~20-30 s cold, fast once PoCL's kernel
    /// cache has it) measures an XgemmDirect set on the shapes below the threshold and an Xgemm set
    /// on those above. At least one candidate is measured whatever the budget. `before` must be
    /// CLBlast's defaults: call on a context with no overrides.
    public func tune(budget: TimeInterval, candidates: [GemmCandidates.Triple]? = nil) throws -> Outcome {
        let start = Date()
        let elapsed = { Date().timeIntervalSince(start) }
        progress("measuring CLBlast defaults")
        guard let before = timeAll() else { throw TuningError("CLBlast's default SGEMM fails validation on \(context.info.name)") }
        let counts = shapes.map { Double($0.count) }
        let weighted = { (t: [Double]) in zip(t, counts).reduce(0) { $0 + $1.0 * $1.1 } }
        let flops = zip(shapes, counts).reduce(0) { $0 + $1.0.flops * $1.1 }
        var direct = Table(), indirect = Table()
        let list = candidates ?? GemmCandidates.triples(context.info)
        var tried = 0, rejected = 0, costs: [Double] = [], built: [GemmCandidates.Triple] = []
        for (n, c) in list.enumerated() {
            // A candidate PoCL has not compiled before costs 25-90 s (CLBlast's whole GEMM program);
            // one it has costs a few seconds. Plan with the worse of the two.
            let estimate = max(costs.max() ?? 0, 30)
            if tried >= 1, elapsed() + estimate > budget { break }
            let t0 = Date()
            tried += 1
            var ok = true
            do {
                try context.overrideCLBlastParameters(kernel: "GemmRoutine", ["XGEMM_MIN_INDIRECT_SIZE": c.threshold])
                try context.overrideCLBlastParameters(kernel: "Xgemm", c.xgemm)
                try context.overrideCLBlastParameters(kernel: "XgemmDirect", c.direct)
            } catch {
                ok = false
            }
            var failed = !ok
            for s in shapes.indices where ok {
                let isDirect = shapes[s].mnk < c.threshold * c.threshold * c.threshold
                let params = isDirect ? c.direct : c.xgemm
                let table = isDirect ? direct : indirect
                if table[params]?[s] != nil { continue }  // measured with an earlier candidate
                let best = table.values.compactMap { $0[s] }.filter { $0.isFinite }.min()
                // A wrong result (or a refusal) is recorded as +inf: that set can never be chosen
                // for a threshold that sends this shape to its kernel.
                let time = time(s, limit: best.map { 2 * $0 }) ?? .infinity
                if !time.isFinite { failed = true }
                if isDirect { direct[params, default: Array(repeating: nil, count: shapes.count)][s] = time }
                else { indirect[params, default: Array(repeating: nil, count: shapes.count)][s] = time }
            }
            ok = !failed
            if !ok { rejected += 1 }
            if debugTiming {
                let sum = { (row: [Double?]?) in row.map { r in String(format: "%.1f ms", 1000 * self.shapes.indices.reduce(0) { $0 + counts[$1] * (r[$1] ?? 0) }) } ?? "-" }
                print("  candidate \(n + 1): direct \(sum(direct[c.direct])) indirect \(sum(indirect[c.xgemm])) x=\(c.xgemm.keys.sorted().map { "\($0)=\(c.xgemm[$0]!)" }.joined(separator: ",")) d=\(c.direct.keys.sorted().map { "\($0)=\(c.direct[$0]!)" }.joined(separator: ","))")
            }
            costs.append(Date().timeIntervalSince(t0))
            built.append(c)
            let best = choose(indirect: indirect, direct: direct, counts: counts)
            progress(String(format: "candidate %d/%d (threshold %d%@): best %.1f GFLOP/s so far (defaults %.1f), %.0f s elapsed",
                            n + 1, list.count, c.threshold, ok ? "" : ", rejected", flops / best.seconds / 1e9,
                            flops / weighted(before) / 1e9, elapsed()))
        }

        let best = choose(indirect: indirect, direct: direct, counts: counts)
        guard best.seconds.isFinite else {
            return Outcome(tuning: nil, before: before, after: before, tried: tried, rejected: rejected, total: list.count, threshold: 0,
                           remeasured: false)
        }
        let tuning = CLBlastTuning(device: context.info.cacheIdentity, xgemm: best.x, xgemmDirect: best.d,
                                   gemmRoutine: ["XGEMM_MIN_INDIRECT_SIZE": best.threshold])
        // Each kernel's set was validated and timed at every shape it serves under this threshold.
        // Re-measure when exactly this triple was built (a cheap rebuild from PoCL's cache); a new
        // mix of two candidates would cost a cold build, so its per-kernel measurements stand.
        let directShapes = Set(shapes.indices.filter { shapes[$0].mnk < best.threshold * best.threshold * best.threshold })
        var after = shapes.indices.map { directShapes.contains($0) ? direct[best.d!]![$0]! : indirect[best.x!]![$0]! }
        var remeasured = false
        if built.contains(where: { ($0.xgemm == best.x || best.x == nil) && ($0.direct == best.d || best.d == nil) && $0.threshold == best.threshold }) {
            try tuning.apply(to: context)
            guard let t = timeAll() else { throw TuningError("the chosen CLBlast parameters fail validation on re-measurement") }
            after = t
            remeasured = true
        }
        return Outcome(tuning: weighted(after) < weighted(before) ? tuning : nil, before: before, after: after,
                       tried: tried, rejected: rejected, total: list.count, threshold: best.threshold, remeasured: remeasured)
    }

    /// The threshold and parameter sets minimising Σ count · time over the shapes, among sets
    /// measured at every shape they would run.
    func choose(indirect: Table, direct: Table, counts: [Double]) -> (threshold: Int, x: [String: Int]?, d: [String: Int]?, seconds: Double) {
        var best: (threshold: Int, x: [String: Int]?, d: [String: Int]?, seconds: Double) = (0, nil, nil, .infinity)
        func pick(_ table: Table, _ wanted: [Int]) -> ([String: Int]?, Double)? {
            if wanted.isEmpty { return (nil, 0) }
            var found: ([String: Int]?, Double)?
            for (params, times) in table {
                guard wanted.allSatisfy({ times[$0]?.isFinite ?? false }) else { continue }
                let cost = wanted.reduce(0) { $0 + counts[$1] * times[$1]! }
                if found == nil || cost < found!.1 { found = (params, cost) }
            }
            return found
        }
        for t in GemmCandidates.thresholds {
            let directShapes = shapes.indices.filter { shapes[$0].mnk < t * t * t }
            let indirectShapes = shapes.indices.filter { shapes[$0].mnk >= t * t * t }
            guard let x = pick(indirect, indirectShapes), let d = pick(direct, directShapes) else { continue }
            if x.1 + d.1 < best.seconds { best = (t, x.0, d.0, x.1 + d.1) }
        }
        return best
    }
}
