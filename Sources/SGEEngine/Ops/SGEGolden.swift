import Foundation
import SGETensor

/// Checking SGE against the golden files made by PyTorch autograd in float64 (Tests/Fixtures/golden).
/// Shared by the tests and `sge check-golden`, so both apply the same rule.
public enum SGEGolden {
    /// The tensors compared, in report order.
    public static let tensorNames = ["out", "grad_x", "grad_weight", "grad_bias"]

    /// Pass iff max |actual - golden| ≤ 10·f32_err + 1e-6·max(1, max|golden|).
    ///
    /// f32_err is how far PyTorch's own float32 computation lands from the float64 truth: the error
    /// scale of a correct float32 implementation. A different but correct summation order can land
    /// a few times further away, hence the factor 10; the 1e-6·max(1, max|golden|) floor (about 8
    /// float32 ulps at the tensor's magnitude) keeps the rule meaningful when f32_err happens to be
    /// tiny. For the golden cases this is at most ~1.3e-5 on `out`, so a 1e-3 perturbation or
    /// swapped weight/bias fails it, while the spatially constant slab's grad_x, whose f32_err is
    /// 5.5e-3 (rounding amplified by 1/eps), gets the looser bound it needs.
    public static func tolerance(f32Err: Double, maxAbsGolden: Double) -> Double {
        10 * f32Err + 1e-6 * max(1, maxAbsGolden)
    }

    public static let ruleDescription = "PASS iff max|actual - golden| <= 10*f32_err + 1e-6*max(1, max|golden|), "
        + "where f32_err is the file's f32_err_<tensor> metadata (PyTorch float32's own error vs float64)."

    /// One golden file's inputs, expected outputs and error scales.
    public struct Case {
        public let path: String
        public let x, gradOut, weight, bias: HostTensor
        public let groups: Int
        public let expected: [String: HostTensor]
        public let f32Err: [String: Double]

        public init(path: String, x: HostTensor, gradOut: HostTensor, weight: HostTensor, bias: HostTensor, groups: Int,
                    expected: [String: HostTensor], f32Err: [String: Double]) {
            self.path = path
            self.x = x
            self.gradOut = gradOut
            self.weight = weight
            self.bias = bias
            self.groups = groups
            self.expected = expected
            self.f32Err = f32Err
        }

        public static func load(path: String) throws -> Case {
            let file = try SafeTensors.read(path: path)
            func meta(_ key: String) throws -> String {
                guard let v = file.metadata[key] else {
                    throw SGEError.corruptFile(path: path, reason: "no '\(key)' in the metadata (not an SGE golden file?)")
                }
                return v
            }
            guard let groups = Int(try meta("groups")), groups > 0 else {
                throw SGEError.corruptFile(path: path, reason: "metadata 'groups' is not a positive integer")
            }
            var expected: [String: HostTensor] = [:]
            var errs: [String: Double] = [:]
            for name in tensorNames {
                expected[name] = try file.tensor(name, path: path)
                let text = try meta("f32_err_\(name)")
                guard let e = Double(text), e.isFinite, e >= 0 else {
                    throw SGEError.corruptFile(path: path, reason: "metadata 'f32_err_\(name)' is '\(text)', not a finite number >= 0 "
                        + "(it sets the tolerance of '\(name)'; regenerate the golden file)")
                }
                errs[name] = e
            }
            return Case(path: path, x: try file.tensor("x", path: path), gradOut: try file.tensor("grad_out", path: path),
                        weight: try file.tensor("weight", path: path), bias: try file.tensor("bias", path: path),
                        groups: groups, expected: expected, f32Err: errs)
        }
    }

    /// The comparison of one tensor.
    public struct Result: Sendable {
        public let name: String
        public let maxAbs: Double
        public let maxRel: Double
        public let f32Err: Double
        public let tolerance: Double
        /// The shared element-wise comparison behind the verdict.
        public let closeness: Closeness
        public var passed: Bool { closeness.passed }
        /// What failed, for the report ("" when passed).
        public var problem: String {
            if passed { return "" }
            if let l = closeness.lengths { return "\(name): \(l.actual) values, golden has \(l.expected)" }
            guard let f = closeness.firstFailures.first else { return "\(name): failed" }
            let which = !f.expected.isFinite ? "golden value is \(f.expected)" : (!f.actual.isFinite ? "computed value is \(f.actual)" : "off by \(String(format: "%.3e", abs(Double(f.actual) - Double(f.expected))))")
            return "\(name)[\(f.index)]: \(which) (got \(f.actual), golden \(f.expected)); \(closeness.failures) element(s) fail"
                + (closeness.nonFinite > 0 ? ", \(closeness.nonFinite) non-finite" : "")
        }
    }

    /// Compares `actual` with `golden` under the rule, through the shared `Closeness.compare`: NaN
    /// or Inf on either side, or a size mismatch, always fail. The tolerance's max|golden| is taken
    /// over finite golden values (a non-finite one fails on its own, it does not widen the bound).
    public static func evaluate(_ name: String, actual: [Float], golden: [Float], f32Err: Double) -> Result {
        let maxGolden = golden.reduce(0.0) { $1.isFinite ? max($0, abs(Double($1))) : $0 }
        let tol = tolerance(f32Err: f32Err, maxAbsGolden: maxGolden)
        let c = Closeness.compare(actual, golden, atol: tol, rtol: 0, relativeFloor: .leastNonzeroMagnitude)
        let maxAbs = c.lengths == nil ? c.maxAbs : .infinity
        return Result(name: name, maxAbs: maxAbs, maxRel: c.lengths == nil ? c.maxRel : .infinity, f32Err: f32Err, tolerance: tol, closeness: c)
    }

    /// The four computed tensors of a golden case on `backend`: forward, then backward from zeroed
    /// weight/bias gradients (normalize = true, as in the paper's module).
    public static func compute<B: BackendBase & SGEOps>(_ c: Case, on backend: B) throws -> [String: [Float]] {
        let x = try backend.tensor(c.x, label: "x")
        let go = try backend.tensor(c.gradOut, label: "grad_out")
        let w = try backend.tensor(c.weight, label: "weight")
        let b = try backend.tensor(c.bias, label: "bias")
        let (out, saved) = try backend.sgeForward(x, weight: w, bias: b, groups: c.groups, normalize: true)
        let gw = backend.zeros([c.groups], label: "grad_weight")
        let gb = backend.zeros([c.groups], label: "grad_bias")
        let gx = try backend.sgeBackward(go, x: x, weight: w, bias: b, groups: c.groups, normalize: true, saved: saved,
                                         gradWeight: gw, gradBias: gb)
        return ["out": try out.read(), "grad_x": try gx.read(), "grad_weight": try gw.read(), "grad_bias": try gb.read()]
    }

    /// Computes and compares every tensor of a golden case.
    public static func check<B: BackendBase & SGEOps>(_ c: Case, on backend: B) throws -> [Result] {
        let got = try compute(c, on: backend)
        return tensorNames.map { evaluate($0, actual: got[$0]!, golden: c.expected[$0]!.data, f32Err: c.f32Err[$0]!) }
    }
}
