import Foundation
import SGEReference
import SGETensor

/// Validates a backend against another (normally the CPU reference), op by op, on random awkward
/// shapes: what `sge validate` runs.
///
/// Case `i` of op `name` under `seed` S draws everything (shape, hyper-parameters, values) from
/// `SeededRNG(seed: (S + i) ^ fnv1a(name))`, so `--seed S+i --op name --cases 1` replays it alone.
/// Each case runs the op on both backends with the same float32 inputs and compares every output
/// (activations, saved statistics, parameter gradients accumulated onto non-zero starting values,
/// BatchNorm running statistics, SGD's momentum buffer). An element passes when
///
///     |device - reference| <= atol + rtol·|reference|
///
/// with (atol, rtol) chosen per op and output from the length L of the reduction behind it:
/// a float32 sum of L terms of size O(1) (the Double reference being exact by comparison) is off by
/// about u·√L·(partial-sum size) in practice and u·L·Σ|terms| at worst, with u = 2^-24. With
/// inputs of unit variance the partial sums are O(√L), hence atol = c·u·L and rtol = c·u·√L, the
/// constant c per op (below) covering the kernel's summation order and any cancellation after it.
public struct Validator {
    /// Every op `sge validate` knows, in report order.
    public static let ops = ["sge", "conv", "batchnorm", "relu", "add", "maxpool", "avgpool", "globalavgpool", "linear", "loss", "sgd"]

    /// The directions compared for each op (sgd has a single in-place "update").
    public static func directions(_ op: String) -> [String] { op == "sgd" ? ["update"] : ["forward", "backward"] }

    /// How each (op, direction)'s tolerance is formed, for the report. u = 2^-24.
    public static func toleranceRule(_ op: String, _ direction: String) -> String {
        switch (op, direction) {
        case ("sge", "forward"): return "\(fmt(Tol.sge))·u·(L, √L), L = K·M"
        case ("sge", "backward"): return "\(fmt(Tol.sgeBackward))·u·(L, √L)·max(1,κ), L = K·M·N"
        case ("conv", "forward"): return "\(fmt(Tol.conv))·u·(L, √L), L = Cin·k² (Winograd \(fmt(Tol.winograd)))"
        case ("conv", "backward"): return "\(fmt(Tol.conv))·u·(L, √L), L = Cout·k² (Winograd grad_x \(fmt(Tol.winograd))) | N·OH·OW (Winograd \(fmt(Tol.winogradWeightGrad)))"
        case ("batchnorm", "forward"): return "\(fmt(Tol.batchNorm))·u·(L, √L), L = N·H·W"
        case ("batchnorm", "backward"): return "\(fmt(Tol.batchNormBackward))·u·(L, √L), L = N·H·W"
        case ("relu", _): return "exact"
        case ("add", "forward"): return "exact"
        case ("add", "backward"): return "axpby: \(fmt(Tol.axpby))·u·(max|αx|+max|βy|, 1)"
        case ("maxpool", "forward"): return "exact (value, argmax)"
        case ("maxpool", _), ("avgpool", _): return "\(fmt(Tol.pool))·u·(L, √L), L = k²"
        case ("globalavgpool", "forward"): return "\(fmt(Tol.pool))·u·(L, √L), L = H·W"
        case ("globalavgpool", _): return "\(fmt(Tol.pool))·u·(1, 1)"
        case ("linear", "forward"): return "\(fmt(Tol.linear))·u·(L, √L), L = in"
        case ("linear", _): return "\(fmt(Tol.linear))·u·(L, √L), L = out | N"
        case ("loss", "forward"): return "\(fmt(Tol.loss))·u·(L, √L), L = K; correct exact"
        case ("loss", _): return "\(fmt(Tol.loss))·u·(L/N, √L), L = K"
        default: return "\(fmt(Tol.sgd))·u·(1 + max|p|,|g|,|buf|; 1)"
        }
    }

    /// The backend under test (any `Backend`: a wrapper that corrupts an op works too).
    public let device: any Backend
    /// What it is compared with.
    public let reference: any Backend

    public init(device: any Backend, reference: any Backend = ReferenceBackend()) {
        self.device = device
        self.reference = reference
    }

    /// The seed of case `index` under `seed` (what `--seed` replays it with).
    public static func caseSeed(_ seed: UInt64, _ index: Int) -> UInt64 { seed &+ UInt64(index) }

    /// Runs `cases` cases of each op in `ops` (names from `Validator.ops`); `progress(op, done, total)`
    /// is called after every case.
    public func run(ops: [String] = Validator.ops, cases: Int, seed: UInt64,
                    progress: ((String, Int, Int) -> Void)? = nil) throws -> ValidationReport {
        guard cases > 0 else { throw SGEError.invalidArgument("validate: --cases must be positive, got \(cases)") }
        for op in ops where !Validator.ops.contains(op) {
            throw SGEError.invalidArgument("validate: unknown op '\(op)'; known: \(Validator.ops.joined(separator: ", "))")
        }
        var rows: [ValidationRow] = []
        for op in ops {
            var opRows = Validator.directions(op).map {
                ValidationRow(op: op, direction: $0, tolerance: Validator.toleranceRule(op, $0))
            }
            for i in 0..<cases {
                let s = Validator.caseSeed(seed, i)
                do {
                    let result = try runCase(op, seed: s)
                    for (d, compared) in result.directions {
                        guard let r = opRows.firstIndex(where: { $0.direction == d }) else { continue }
                        opRows[r].add(compared, shape: result.shape, seed: s)
                    }
                } catch {
                    // A thrown error (on either backend) fails every direction of this case.
                    for r in opRows.indices { opRows[r].addError("\(error)", seed: s) }
                }
                progress?(op, i + 1, cases)
            }
            rows += opRows
        }
        return ValidationReport(device: device.name, reference: reference.name, cases: cases, seed: seed, rows: rows)
    }

    /// One case of `op`: its shape description and, per direction, the compared outputs.
    func runCase(_ op: String, seed: UInt64) throws -> CaseResult {
        var rng = SeededRNG(seed: seed ^ fnv1a(op))
        var c = CaseRunner(device: device, reference: reference)
        switch op {
        case "sge": return try c.sge(&rng)
        case "conv": return try c.conv(&rng)
        case "batchnorm": return try c.batchNorm(&rng)
        case "relu": return try c.relu(&rng)
        case "add": return try c.add(&rng)
        case "maxpool": return try c.maxPool(&rng)
        case "avgpool": return try c.avgPool(&rng)
        case "globalavgpool": return try c.globalAvgPool(&rng)
        case "linear": return try c.linear(&rng)
        case "loss": return try c.loss(&rng)
        case "sgd": return try c.sgd(&rng)
        default: throw SGEError.invalidArgument("validate: unknown op '\(op)'")
        }
    }
}

/// The tolerance constants c of `atol = c·u·L, rtol = c·u·√L` (see `Validator`), u = 2^-24.
enum Tol {
    static let u = 0x1p-24
    /// SGE forward: means (sums of M), similarities c (sums of K products), mean/std of c over M,
    /// then division by σ + ε — a near-constant slab loses digits in c - μ, so a generous 64.
    static let sge = 64.0
    /// SGE backward: the forward's sums again plus three per-channel and two per-slab sums, and the
    /// weight/bias gradients summing over all N·M positions of a group; cancellation in
    /// gt - mean(gt) - (Σ gt t)·t/(M-1) costs another factor, so 256 with L = K·M·N.
    static let sgeBackward = 256.0
    /// Conv via im2col + CLBlast GEMM (tiled, blocked summation order) against Double: 16.
    static let conv = 16.0
    /// Conv by Winograd F(2×2, 3×3) (out, grad_x): the transforms round sums of the terms' magnitudes
    /// S = Σ|w||x| (≈ 0.64·L for normal data), not of the result (WinogradTests). `SGE_CONV_WINOGRAD=1
    /// sge validate --op conv --cases 600` (Winograd on every 3×3/stride-1/dilation-1 case) measured
    /// at most 0.12 of the direct constant 16, i.e. ≈ 2·u·(L, √L); 32 leaves 16× for the tails of S.
    static let winograd = 32.0
    /// Conv grad_weight by Winograd (`ConvPath.winogradFull`): sums of Y'⊙V over the N·OH·OW/4 tiles,
    /// then GᵀMG, so again relative to S = Σ|go||x|, not the result (WinogradTests). 600 cases with
    /// Winograd and its weight gradient forced on every 3×3/stride-1/dilation-1 case measured under
    /// 10.5% of this rule in the backward (the worst backward case was not a Winograd one), i.e.
    /// < 3.4·u·(L, √L); 32 as for `winograd`.
    static let winogradWeightGrad = 32.0
    /// BatchNorm forward: float32 channel mean/variance over N·H·W, then normalisation; 16.
    static let batchNorm = 16.0
    /// BatchNorm backward subtracts two channel sums from g (cancellation): 64.
    static let batchNormBackward = 64.0
    /// Pooling: sums of at most k² (or H·W) floats in another order, then one division: 4.
    static let pool = 4.0
    /// Linear: one GEMM (CLBlast) per direction: 16.
    static let linear = 16.0
    /// Cross-entropy: float exp/log (a few ulps each) summed over K classes: 16.
    static let loss = 16.0
    /// SGD: a handful of float multiply-adds (possibly fused) per element: 8 ulps of the terms.
    static let sgd = 8.0
    /// axpby: two products and a sum, each rounded once (or fused): 4 ulps of |αx| + |βy|.
    static let axpby = 4.0

    /// (atol, rtol) for a float32 reduction of length `length` with constant `c`.
    static func reduction(_ length: Int, _ c: Double) -> (Double, Double) {
        let l = Double(max(length, 1))
        return (c * u * l, c * u * l.squareRoot())
    }
}

private func fmt(_ x: Double) -> String { x == x.rounded() ? String(Int(x)) : String(x) }

/// FNV-1a of an op name: a stable per-op salt for case seeds (Swift's Hasher is randomised per run).
func fnv1a(_ s: String) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    return h
}

/// One output compared: device values, reference values and the tolerance for this case.
struct Compared {
    let name: String
    let shape: Shape
    let actual: [Float]
    let expected: [Float]
    let atol: Double
    let rtol: Double
}

/// What one case produced: a human-readable shape and the comparisons per direction.
struct CaseResult {
    let shape: String
    let directions: [(String, [Compared])]
}

/// The outcome of one (op, direction) over all cases.
public struct ValidationRow: Encodable, Sendable {
    public var op: String
    public var direction: String
    public var cases = 0
    /// Largest |device - reference| over every compared element of every case.
    public var maxAbs = 0.0
    /// Largest |device - reference| / |reference| over elements with |reference| >= 1e-3 (smaller
    /// ones are judged by atol; their ratio says nothing).
    public var maxRel = 0.0
    /// Largest |device - reference| / (atol + rtol·|reference|): the share of the tolerance used
    /// (> 1 fails). Exact comparisons count any difference as infinity.
    public var worstRatio = 0.0
    /// How the tolerance is formed.
    public var tolerance: String
    /// The case with the largest `worstRatio` (the first case while all are exact).
    public var worstShape = ""
    public var worstSeed: UInt64 = 0
    /// The output tensor (and its index) where the worst element was.
    public var worstTensor = ""
    /// Number of failing cases.
    public var failures = 0
    /// The first failing case: its shape, seed and what went wrong.
    public var failureShape: String?
    public var failureSeed: UInt64?
    public var failureDetail: String?

    public var passed: Bool { failures == 0 }

    init(op: String, direction: String, tolerance: String) {
        self.op = op
        self.direction = direction
        self.tolerance = tolerance
    }

    enum CodingKeys: String, CodingKey {
        case op, direction, cases, maxAbs, maxRel, worstRatio, tolerance, worstShape, worstSeed, worstTensor, failures
        case failureShape, failureSeed, failureDetail, passed
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(op, forKey: .op)
        try c.encode(direction, forKey: .direction)
        try c.encode(cases, forKey: .cases)
        // JSON has no infinity: non-finite errors are written as null.
        try c.encode(maxAbs.isFinite ? maxAbs : nil, forKey: .maxAbs)
        try c.encode(maxRel.isFinite ? maxRel : nil, forKey: .maxRel)
        try c.encode(worstRatio.isFinite ? worstRatio : nil, forKey: .worstRatio)
        try c.encode(tolerance, forKey: .tolerance)
        try c.encode(worstShape, forKey: .worstShape)
        try c.encode(worstSeed, forKey: .worstSeed)
        try c.encode(worstTensor, forKey: .worstTensor)
        try c.encode(failures, forKey: .failures)
        try c.encodeIfPresent(failureShape, forKey: .failureShape)
        try c.encodeIfPresent(failureSeed, forKey: .failureSeed)
        try c.encodeIfPresent(failureDetail, forKey: .failureDetail)
        try c.encode(passed, forKey: .passed)
    }

    mutating func add(_ compared: [Compared], shape: String, seed: UInt64) {
        cases += 1
        var caseRatio = 0.0, caseWorst = "", problem: String?
        // The shared rule (Closeness.compare): NaN/Inf on either side fails; no op here expects one.
        for t in compared {
            let c = Closeness.compare(t.actual, t.expected, shape: t.shape, atol: t.atol, rtol: t.rtol, relativeFloor: 1e-3, keep: 1)
            if let l = c.lengths {
                problem = problem ?? "\(t.name): \(l.actual) values, reference has \(l.expected)"
                caseRatio = .infinity
                continue
            }
            maxAbs = max(maxAbs, c.maxAbs)
            maxRel = max(maxRel, c.maxRel)
            if c.worstIndex >= 0, c.worstRatio > caseRatio || caseWorst.isEmpty {
                caseRatio = max(caseRatio, c.worstRatio)
                caseWorst = "\(t.name)[\(Closeness.index(c.worstIndex, t.shape))]"
            }
            if let f = c.firstFailures.first, problem == nil {
                let diff = abs(Double(f.actual) - Double(f.expected))
                problem = "\(t.name)[\(Closeness.index(f.index, t.shape))] = \(f.actual), reference \(f.expected) "
                    + (f.actual.isFinite && f.expected.isFinite
                        ? "(|diff| \(String(format: "%.3e", diff)) > tolerance \(String(format: "%.3e", f.allowed)))"
                        : "(non-finite value)")
            }
        }
        if caseRatio > worstRatio || worstShape.isEmpty {
            worstRatio = max(worstRatio, caseRatio)
            worstShape = shape
            worstSeed = seed
            worstTensor = caseWorst
        }
        if let problem { fail(problem, shape: shape, seed: seed) }
    }

    mutating func addError(_ message: String, seed: UInt64) {
        cases += 1
        worstRatio = .infinity
        fail("error: \(message)", shape: "(case threw before its shape was recorded)", seed: seed)
    }

    private mutating func fail(_ detail: String, shape: String, seed: UInt64) {
        failures += 1
        if failureSeed == nil {
            failureShape = shape
            failureSeed = seed
            failureDetail = detail
        }
    }

    /// The command that replays the first failing case (or the worst one).
    public var reproduce: String { "sge validate --op \(op) --seed \(failureSeed ?? worstSeed) --cases 1" }
}

/// All rows of a validation run.
public struct ValidationReport: Encodable, Sendable {
    public var device: String
    public var reference: String
    public var cases: Int
    public var seed: UInt64
    public var rows: [ValidationRow]
    public var passed: Bool { rows.allSatisfy(\.passed) }
    public var failed: [ValidationRow] { rows.filter { !$0.passed } }
}
