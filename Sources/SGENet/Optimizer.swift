import Foundation
import SGEEngine
import SGETensor

/// SGD with momentum, dampening, weight decay and optional Nesterov — PyTorch's `torch.optim.SGD`
/// rule, applied in place on the device by the `sgd_step` kernel:
///     d = g + wd·p;  buf = (first step) ? d : momentum·buf + (1 - dampening)·d
///     d = nesterov ? d + momentum·buf : buf;  p -= lr·d
public final class SGD {
    public var momentum: Float
    public var dampening: Float
    public var weightDecay: Float
    public var nesterov: Bool
    /// Exempt BatchNorm and SGE parameters from weight decay (off by default, as in the paper's recipe).
    public var noDecayNormAndGate: Bool
    let backend: any Backend
    let parameters: [(String, Parameter)]
    public private(set) var steps = 0
    /// The parameters, gradients and momentum buffers in flat device buffers, made on the first
    /// step (one SGD launch per step); nil on the reference backend.
    private var pack: SGDPack?

    public init(_ backend: any Backend, parameters: [(String, Parameter)], momentum: Float = 0.9, dampening: Float = 0,
                weightDecay: Float = 5e-4, nesterov: Bool = false, noDecayNormAndGate: Bool = false) throws {
        guard momentum >= 0, weightDecay >= 0, dampening >= 0 else {
            throw SGEError.invalidArgument("SGD: momentum \(momentum), dampening \(dampening) and weight decay \(weightDecay) must be ≥ 0")
        }
        guard !nesterov || (momentum > 0 && dampening == 0) else {
            throw SGEError.invalidArgument("SGD: Nesterov momentum requires momentum > 0 and zero dampening (as in PyTorch)")
        }
        (self.backend, self.parameters, self.momentum, self.dampening) = (backend, parameters, momentum, dampening)
        (self.weightDecay, self.nesterov, self.noDecayNormAndGate) = (weightDecay, nesterov, noDecayNormAndGate)
    }

    /// Applies one update with learning rate `lr` to every parameter, then zeroes the gradients. On
    /// a device the tensors are packed into flat buffers on the first step (`SGDPack`; again if the
    /// weight decays change), so each step is one launch.
    public func step(lr: Float) throws {
        let entries = parameters.map { name, p in
            if p.momentum == nil { p.momentum = backend.zeros(p.value.shape, label: name + ".momentum_buffer") }
            return SGDEntry(param: p.value, grad: p.grad, momentumBuffer: p.momentum!,
                            weightDecay: (noDecayNormAndGate && p.isNormOrGate) ? 0 : weightDecay)
        }
        if !(pack?.matches(entries) ?? false) { pack = try backend.packSGD(entries) }
        if let pack {
            try backend.sgdStepPacked(pack, lr: lr, momentum: momentum, dampening: dampening, nesterov: nesterov, firstStep: steps == 0)
        } else {
            try backend.sgdStepMulti(entries, lr: lr, momentum: momentum, dampening: dampening, nesterov: nesterov, firstStep: steps == 0)
        }
        steps += 1
    }

    /// Sets the step count (when resuming: a momentum buffer then exists and is loaded).
    public func restore(steps: Int) { self.steps = steps }

    public func zeroGrad() throws {
        for (_, p) in parameters { try backend.fill(p.grad, 0) }
    }
}

/// Learning-rate schedule with linear warm-up.
public struct LRSchedule: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable, CaseIterable { case cosine, step, constant }
    public var kind: Kind
    public var baseLR: Float
    public var warmupSteps: Int
    public var totalSteps: Int
    /// For `step`: multiply by `gamma` at each of these epochs' first step.
    public var milestones: [Int]
    public var gamma: Float
    public var stepsPerEpoch: Int

    public init(kind: Kind, baseLR: Float, warmupSteps: Int, totalSteps: Int, stepsPerEpoch: Int, milestones: [Int] = [], gamma: Float = 0.1) {
        self.kind = kind
        self.baseLR = baseLR
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
        self.stepsPerEpoch = stepsPerEpoch
        self.milestones = milestones
        self.gamma = gamma
    }

    /// The learning rate for step `t` (0-based).
    public func lr(at t: Int) -> Float {
        if t < warmupSteps { return baseLR * Float(t + 1) / Float(warmupSteps) }
        switch kind {
        case .constant: return baseLR
        case .cosine:
            let span = max(totalSteps - warmupSteps, 1)
            let progress = min(Double(t - warmupSteps) / Double(span), 1)
            return Float(Double(baseLR) * 0.5 * (1 + cos(Double.pi * progress)))
        case .step:
            let epoch = t / max(stepsPerEpoch, 1)
            return baseLR * pow(gamma, Float(milestones.filter { epoch >= $0 }.count))
        }
    }
}
