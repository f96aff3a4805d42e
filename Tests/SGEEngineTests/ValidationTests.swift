import SGEEngine
import SGEOpenCL
import SGETensor
import SGEDeviceTestSupport
import XCTest

/// The validator behind `sge validate`: it passes the OpenCL backend, and it catches a kernel that is
/// wrong by a little.
final class ValidationTests: XCTestCase {
    /// A few cases of every op keep this under ~30 s in a debug build on 2 cores.
    let casesPerOp = 3

    func testValidatorPassesTheDeviceOnEveryOp() throws {
        let device = try testDevice()
        let report = try Validator(device: device).run(cases: casesPerOp, seed: 11)
        let expectedRows = Validator.ops.flatMap { op in Validator.directions(op).map { "\(op) \($0)" } }
        XCTAssertEqual(report.rows.map { "\($0.op) \($0.direction)" }, expectedRows)
        for row in report.rows {
            XCTAssertTrue(row.passed, "\(row.op) \(row.direction): \(row.failureDetail ?? "") at \(row.failureShape ?? "") seed \(row.failureSeed ?? 0)")
            XCTAssertEqual(row.cases, casesPerOp)
            XCTAssertFalse(row.worstShape.isEmpty, "\(row.op) \(row.direction) names its worst shape")
            XCTAssertLessThanOrEqual(row.worstRatio, 1)
        }
        XCTAssertTrue(report.passed)
    }

    /// ReLU backward off by 1e-3 in one element per tensor: only that row fails, and the failure names
    /// the case's shape and a seed that replays it.
    func testValidatorCatchesABrokenReluBackward() throws {
        let device = try testDevice()
        let broken = BrokenBackend(device, breaking: "relu backward")
        let report = try Validator(device: broken).run(ops: ["relu", "add", "sge"], cases: 2, seed: 5)
        XCTAssertFalse(report.passed)
        XCTAssertEqual(report.failed.map { "\($0.op) \($0.direction)" }, ["relu backward"])
        let row = try XCTUnwrap(report.failed.first)
        XCTAssertEqual(row.failures, 2)
        XCTAssertEqual(row.failureSeed, 5)
        XCTAssertTrue(row.failureShape?.hasPrefix("x [") ?? false, "failure names the shape: \(row.failureShape ?? "nil")")
        XCTAssertTrue(row.failureDetail?.contains("grad_x") ?? false, row.failureDetail ?? "")
        XCTAssertEqual(row.reproduce, "sge validate --op relu --seed 5 --cases 1")

        // The seed replays the failing case alone, with the same shape.
        let replay = try Validator(device: broken).run(ops: ["relu"], cases: 1, seed: 5)
        XCTAssertEqual(replay.failed.first?.failureShape, row.failureShape)
        // And the unbroken device passes the same case.
        XCTAssertTrue(try Validator(device: device).run(ops: ["relu"], cases: 1, seed: 5).passed)
    }

    /// An SGE forward off by a relative 1e-4 in one element (a few hundred ulps, but well inside what a
    /// loose check would accept) is caught too: the tolerance is tight where the maths allows.
    func testValidatorCatchesASlightlyWrongSGEForward() throws {
        let device = try testDevice()
        let report = try Validator(device: BrokenBackend(device, breaking: "sge forward")).run(ops: ["sge", "conv"], cases: 2, seed: 3)
        XCTAssertEqual(report.failed.map { "\($0.op) \($0.direction)" }, ["sge forward"])
        XCTAssertTrue(report.failed.first?.failureDetail?.contains("out[") ?? false, report.failed.first?.failureDetail ?? "")
    }

    /// A device that throws fails the case with the error's message instead of aborting the run.
    func testValidatorReportsErrorsAsFailures() throws {
        let device = try testDevice()
        let report = try Validator(device: BrokenBackend(device, breaking: "linear throws")).run(ops: ["linear"], cases: 1, seed: 1)
        XCTAssertEqual(report.failed.count, 2)
        XCTAssertTrue(report.failed[0].failureDetail?.contains("deliberately") ?? false, report.failed[0].failureDetail ?? "")
    }

    func testUnknownOpIsRejected() throws {
        XCTAssertThrowsError(try Validator(device: ReferenceBackend()).run(ops: ["convolution"], cases: 1, seed: 1)) { error in
            XCTAssertTrue("\(error)".contains("unknown op 'convolution'"), "\(error)")
        }
    }

    /// Without OpenCL: the reference against itself passes every op exactly (a smoke test of the case
    /// generators, which also checks that every case is accepted by the ops' argument checks).
    func testReferenceAgainstItselfIsExact() throws {
        let report = try Validator(device: ReferenceBackend()).run(cases: 2, seed: 1)
        for row in report.rows {
            XCTAssertTrue(row.passed, "\(row.op) \(row.direction): \(row.failureDetail ?? "")")
            XCTAssertEqual(row.maxAbs, 0, "\(row.op) \(row.direction)")
        }
    }
}

/// Forwards every op to a real backend but corrupts one (`breaking`): "relu backward" adds 1e-3 to
/// the first element of grad_x; "sge forward" scales one output element by (1 + 1e-4); "linear
/// throws" makes linearForward throw.
final class BrokenBackend: BackendBase, ElementwiseOps, SGEOps, ConvOps, BatchNormOps, PoolOps, LossOps, OptimOps {
    let base: OpenCLBackend
    let breaking: String
    init(_ base: OpenCLBackend, breaking: String) {
        self.base = base
        self.breaking = breaking
    }

    var name: String { "broken(\(base.name))" }
    var memory: DeviceMemory? { base.memory }
    func makeTensor(_ values: [Float]?, _ shape: Shape) -> Tensor { base.makeTensor(values, shape) }
    func makeOutput(_ shape: Shape) throws -> Tensor { try base.makeOutput(shape) }
    func synchronize() throws { try base.synchronize() }

    /// Adds `delta` to element `index` (or scales it by 1 + `relative`).
    private func corrupt(_ t: Tensor, index: Int = 0, delta: Float = 0, relative: Float = 0) throws -> Tensor {
        var v = try t.read()
        let i = min(index, v.count - 1)
        v[i] = v[i] * (1 + relative) + delta
        try t.write(v)
        return t
    }

    // Elementwise
    func fill(_ x: Tensor, _ value: Float) throws { try base.fill(x, value) }
    func scale(_ x: Tensor, _ alpha: Float) throws { try base.scale(x, alpha) }
    func axpby(alpha: Float, _ x: Tensor, beta: Float, _ y: Tensor) throws { try base.axpby(alpha: alpha, x, beta: beta, y) }
    func add(_ a: Tensor, _ b: Tensor) throws -> Tensor { try base.add(a, b) }
    func copy(_ src: Tensor, to dst: Tensor) throws { try base.copy(src, to: dst) }
    func reluForward(_ x: Tensor) throws -> Tensor {
        let y = try base.reluForward(x)
        return breaking == "relu forward nan" ? try corrupt(y, delta: .nan) : y
    }
    func addReLU(_ a: Tensor, _ b: Tensor) throws -> Tensor { try base.addReLU(a, b) }
    func reluBackward(out: Tensor, gradOut: Tensor) throws -> Tensor {
        let g = try base.reluBackward(out: out, gradOut: gradOut)
        return breaking == "relu backward" ? try corrupt(g, delta: 1e-3) : g
    }

    // SGE
    func sgeForward(_ x: Tensor, weight: Tensor, bias: Tensor, groups: Int, normalize: Bool) throws -> (out: Tensor, saved: SGESaved) {
        let r = try base.sgeForward(x, weight: weight, bias: bias, groups: groups, normalize: normalize)
        guard breaking == "sge forward" else { return r }
        return (try corrupt(r.out, index: r.out.count / 2, relative: 1e-4), r.saved)
    }
    func sgeBackward(_ gradOut: Tensor, x: Tensor, weight: Tensor, bias: Tensor, groups: Int, normalize: Bool,
                     saved: SGESaved, gradWeight: Tensor, gradBias: Tensor) throws -> Tensor {
        try base.sgeBackward(gradOut, x: x, weight: weight, bias: bias, groups: groups, normalize: normalize, saved: saved,
                             gradWeight: gradWeight, gradBias: gradBias)
    }
    func sgeGate(_ x: Tensor, weight: Tensor, bias: Tensor, groups: Int, normalize: Bool) throws -> Tensor {
        try base.sgeGate(x, weight: weight, bias: bias, groups: groups, normalize: normalize)
    }

    // Conv / Linear
    func conv2dForward(_ x: Tensor, weight: Tensor, bias: Tensor?, params: Conv2dParams) throws -> Tensor {
        try base.conv2dForward(x, weight: weight, bias: bias, params: params)
    }
    func conv2dBackward(_ gradOut: Tensor, x: Tensor, weight: Tensor, params: Conv2dParams,
                        gradWeight: Tensor, gradBias: Tensor?, needInputGrad: Bool) throws -> Tensor? {
        try base.conv2dBackward(gradOut, x: x, weight: weight, params: params, gradWeight: gradWeight, gradBias: gradBias,
                                needInputGrad: needInputGrad)
    }
    func linearForward(_ x: Tensor, weight: Tensor, bias: Tensor?) throws -> Tensor {
        if breaking == "linear throws" { throw SGEError.invalidArgument("linearForward deliberately broken") }
        return try base.linearForward(x, weight: weight, bias: bias)
    }
    func linearBackward(_ gradOut: Tensor, x: Tensor, weight: Tensor, gradWeight: Tensor, gradBias: Tensor?) throws -> Tensor {
        try base.linearBackward(gradOut, x: x, weight: weight, gradWeight: gradWeight, gradBias: gradBias)
    }

    // BatchNorm
    func batchNormForward(_ x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVar: Tensor,
                          training: Bool, momentum: Float, eps: Float, relu: Bool) throws -> (out: Tensor, saved: BatchNormSaved) {
        try base.batchNormForward(x, gamma: gamma, beta: beta, runningMean: runningMean, runningVar: runningVar,
                                  training: training, momentum: momentum, eps: eps, relu: relu)
    }
    func batchNormBackward(_ gradOut: Tensor, x: Tensor, gamma: Tensor, saved: BatchNormSaved,
                           gradGamma: Tensor, gradBeta: Tensor, reluOutput: Tensor?) throws -> Tensor {
        try base.batchNormBackward(gradOut, x: x, gamma: gamma, saved: saved, gradGamma: gradGamma, gradBeta: gradBeta, reluOutput: reluOutput)
    }

    // Pooling
    func maxPoolForward(_ x: Tensor, kernel: Int, stride: Int, padding: Int) throws -> (out: Tensor, argmax: Tensor) {
        try base.maxPoolForward(x, kernel: kernel, stride: stride, padding: padding)
    }
    func maxPoolBackward(_ gradOut: Tensor, argmax: Tensor, inputShape: Shape, kernel: Int, stride: Int, padding: Int) throws -> Tensor {
        try base.maxPoolBackward(gradOut, argmax: argmax, inputShape: inputShape, kernel: kernel, stride: stride, padding: padding)
    }
    func avgPoolForward(_ x: Tensor, kernel: Int, stride: Int, padding: Int) throws -> Tensor {
        try base.avgPoolForward(x, kernel: kernel, stride: stride, padding: padding)
    }
    func avgPoolBackward(_ gradOut: Tensor, inputShape: Shape, kernel: Int, stride: Int, padding: Int) throws -> Tensor {
        try base.avgPoolBackward(gradOut, inputShape: inputShape, kernel: kernel, stride: stride, padding: padding)
    }
    func globalAvgPoolForward(_ x: Tensor) throws -> Tensor { try base.globalAvgPoolForward(x) }
    func globalAvgPoolBackward(_ gradOut: Tensor, inputShape: Shape) throws -> Tensor {
        try base.globalAvgPoolBackward(gradOut, inputShape: inputShape)
    }

    // Loss, SGD
    func softmaxCrossEntropy(_ logits: Tensor, labels: Tensor) throws -> (loss: Tensor, correct: Tensor, gradLogits: Tensor) {
        try base.softmaxCrossEntropy(logits, labels: labels)
    }
    func sgdStep(_ param: Tensor, grad: Tensor, momentumBuffer: Tensor, lr: Float, momentum: Float, dampening: Float,
                 weightDecay: Float, nesterov: Bool, firstStep: Bool) throws {
        try base.sgdStep(param, grad: grad, momentumBuffer: momentumBuffer, lr: lr, momentum: momentum, dampening: dampening,
                         weightDecay: weightDecay, nesterov: nesterov, firstStep: firstStep)
    }
    func sgdStepMulti(_ entries: [SGDEntry], lr: Float, momentum: Float, dampening: Float, nesterov: Bool, firstStep: Bool) throws {
        try base.sgdStepMulti(entries, lr: lr, momentum: momentum, dampening: dampening, nesterov: nesterov, firstStep: firstStep)
    }
    func packSGD(_ entries: [SGDEntry]) throws -> SGDPack? { try base.packSGD(entries) }
    func sgdStepPacked(_ pack: SGDPack, lr: Float, momentum: Float, dampening: Float, nesterov: Bool, firstStep: Bool) throws {
        try base.sgdStepPacked(pack, lr: lr, momentum: momentum, dampening: dampening, nesterov: nesterov, firstStep: firstStep)
    }
}
