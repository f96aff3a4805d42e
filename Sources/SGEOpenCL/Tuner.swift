import COpenCL
import Foundation

/// Times CLBlast SGEMM at a set of shapes on one device and searches parameter sets for
/// Xgemm, XgemmDirect and the GemmRoutine threshold (see the comment at the top of Tuning.swift).
/// Timing: whole calls, clFinish-timed on the host, one validated warm-up run (it also pays the
/// kernel compilation) then the median of `repeats` runs.
public final class GemmTuner {
    public let context: CLContext
    public let shapes: [GemmShape]
    public var repeats = 3
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
            if s.batch > 1 {
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
            guard isCorrect(i, result: result) else { return nil }
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
            return nil
        }
    }

    /// Seconds per shape with the current parameters; nil for the whole set when any shape fails.
    /// Stops timing a shape early when it is slower than `limits[s]`.
    func timeAll(limits: [Double]? = nil) -> [Double]? {
        var result: [Double] = []
        for i in shapes.indices {
            guard let t = time(i, limit: limits?[i]) else { return nil }
            result.append(t)
        }
        return result
    }

    /// GFLOP/s per shape from seconds.
    public func gflops(_ seconds: [Double]) -> [Double] { zip(shapes, seconds).map { $0.flops / $1 / 1e9 } }

    // MARK: search

    public struct Outcome {
        public var tuning: CLBlastTuning?
        public var before: [Double], after: [Double]  // seconds per shape
        public var tried: Int, rejected: Int, total: Int
        public var threshold: Int
    }

    /// Searches for `budget` seconds of wall time (at least the defaults and one candidate of each
    /// kernel are measured) and returns the best combination, validated, with before/after times.
    /// `before` must be measured with CLBlast's defaults: call on a context with no overrides.
    public func tune(budget: TimeInterval) throws -> Outcome {
        let start = Date()
        let elapsed = { Date().timeIntervalSince(start) }
        progress("measuring CLBlast defaults")
        guard let before = timeAll() else { throw TuningError("CLBlast's default SGEMM fails validation on \(context.info.name)") }
        let counts = shapes.map { Double($0.count) }
        let weighted = { (t: [Double]) in zip(t, counts).reduce(0) { $0 + $1.0 * $1.1 } }
        let flops = zip(shapes, counts).reduce(0) { $0 + $1.0.flops * $1.1 }
        let always = 1, never = 4096  // XGEMM_MIN_INDIRECT_SIZE forcing every shape indirect / direct
        func setRoutine(_ t: Int) throws { try context.overrideCLBlastParameters(kernel: "GemmRoutine", ["XGEMM_MIN_INDIRECT_SIZE": t]) }

        // Tables of seconds per shape; row 0 is CLBlast's default kernel parameters.
        var indirect: [([String: Int]?, [Double])] = [], direct: [([String: Int]?, [Double])] = []
        try setRoutine(always)
        if let t = timeAll() { indirect.append((nil, t)) }
        try setRoutine(never)
        if let t = timeAll() { direct.append((nil, t)) }

        let xs = GemmCandidates.xgemm(context.info), ds = GemmCandidates.xgemmDirect(context.info)
        var queue: [(String, [String: Int])] = []
        for i in 0..<max(xs.count, ds.count) {
            if i < xs.count { queue.append(("Xgemm", xs[i])) }
            if i < ds.count { queue.append(("XgemmDirect", ds[i])) }
        }
        var tried = 0, rejected = 0
        var costs: [Double] = []
        for (n, (kernel, params)) in queue.enumerated() {
            let average = costs.isEmpty ? 0 : costs.reduce(0, +) / Double(costs.count)
            // Leave room for this candidate and the final validated measurement.
            if tried >= 2, elapsed() + average + weighted(before) * Double(repeats + 1) > budget { break }
            let t0 = Date()
            let isDirect = kernel == "XgemmDirect"
            let table = isDirect ? direct : indirect
            let limits = shapes.indices.map { s in 2 * (table.map { $0.1[s] }.min() ?? .infinity) }
            var times: [Double]?
            do {
                try setRoutine(isDirect ? never : always)
                try context.overrideCLBlastParameters(kernel: kernel, params)
                times = timeAll(limits: limits)
            } catch {
                times = nil
            }
            tried += 1
            if let times {
                if isDirect { direct.append((params, times)) } else { indirect.append((params, times)) }
            } else {
                rejected += 1
            }
            costs.append(Date().timeIntervalSince(t0))
            let best = choose(indirect: indirect, direct: direct, counts: counts)
            progress(String(format: "candidate %d/%d (%@%@): best %.1f GFLOP/s so far (defaults %.1f), %.0f s elapsed",
                            n + 1, queue.count, kernel, times == nil ? ", rejected" : "", flops / best.seconds / 1e9,
                            flops / weighted(before) / 1e9, elapsed()))
        }

        let best = choose(indirect: indirect, direct: direct, counts: counts)
        let usesDirect = shapes.contains { $0.mnk < best.threshold * best.threshold * best.threshold }
        let usesIndirect = shapes.contains { $0.mnk >= best.threshold * best.threshold * best.threshold }
        let x = usesIndirect ? indirect[best.x].0 : nil, d = usesDirect ? direct[best.d].0 : nil
        let tuning = CLBlastTuning(device: context.info.cacheIdentity, xgemm: x, xgemmDirect: d,
                                   gemmRoutine: ["XGEMM_MIN_INDIRECT_SIZE": best.threshold])
        // Re-measure the winner when it can be re-applied (a default kernel cannot be restored
        // once overridden in this process: then its measured table rows stand).
        var after = shapes.indices.map { s in shapes[s].mnk < best.threshold * best.threshold * best.threshold ? direct[best.d].1[s] : indirect[best.x].1[s] }
        if (x != nil || !usesIndirect) && (d != nil || !usesDirect) {
            try tuning.apply(to: context)
            guard let t = timeAll() else { throw TuningError("the chosen CLBlast parameters fail validation on re-measurement") }
            after = t
        }
        return Outcome(tuning: weighted(after) < weighted(before) ? tuning : nil, before: before, after: after,
                       tried: tried, rejected: rejected, total: queue.count, threshold: best.threshold)
    }

    /// The threshold and table rows minimising Σ count · time.
    func choose(indirect: [([String: Int]?, [Double])], direct: [([String: Int]?, [Double])], counts: [Double])
        -> (threshold: Int, x: Int, d: Int, seconds: Double) {
        var best = (threshold: 0, x: 0, d: 0, seconds: Double.infinity)
        for t in GemmCandidates.thresholds {
            let isDirect = shapes.map { $0.mnk < t * t * t }
            func cost(_ row: [Double], _ want: Bool) -> Double {
                shapes.indices.reduce(0) { $0 + (isDirect[$1] == want ? counts[$1] * row[$1] : 0) }
            }
            let xi = indirect.indices.min { cost(indirect[$0].1, false) < cost(indirect[$1].1, false) }
            let di = direct.indices.min { cost(direct[$0].1, true) < cost(direct[$1].1, true) }
            let needX = isDirect.contains(false), needD = isDirect.contains(true)
            if (needX && xi == nil) || (needD && di == nil) { continue }
            let total = (xi.map { cost(indirect[$0].1, false) } ?? 0) + (di.map { cost(direct[$0].1, true) } ?? 0)
            if total < best.seconds { best = (t, xi ?? 0, di ?? 0, total) }
        }
        return best
    }
}
