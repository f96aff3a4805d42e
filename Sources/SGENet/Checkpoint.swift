import Foundation
import SGEEngine
import SGETensor

/// Checkpoints in safetensors with PyTorch `state_dict` names: parameters and BatchNorm running
/// statistics under their module names (SGE weight/bias as [1, G, 1, 1] like PytorchInsight),
/// optimizer momentum under `optimizer.momentum_buffer.<name>`, and in the metadata the epoch,
/// step, data-order seed, model configuration and training options. Written atomically.
public enum Checkpoint {
    public static let momentumPrefix = "optimizer.momentum_buffer."

    /// Training position stored with the weights.
    public struct State: Sendable, Equatable {
        public var epoch: Int
        public var step: Int
        /// The data-order seed: batch order and augmentation are drawn from (seed, epoch, batch
        /// index), so (seed, epoch, step) is the whole random state needed to resume exactly.
        public var seed: UInt64
        public var optimizerSteps: Int
        public var extra: [String: String]
        public init(epoch: Int, step: Int, seed: UInt64, optimizerSteps: Int, extra: [String: String] = [:]) {
            self.epoch = epoch
            self.step = step
            self.seed = seed
            self.optimizerSteps = optimizerSteps
            self.extra = extra
        }
    }

    static func storedShape(_ name: String, _ shape: Shape) -> Shape {
        name.hasSuffix(".sge.weight") || name.hasSuffix(".sge.bias") ? [1, shape.count, 1, 1] : shape
    }

    /// Saves `model` (and its optimizer state) to `path` atomically.
    public static func save(model: SGEResNet, state: State, path: String) throws {
        var file = SafeTensors()
        for (name, p) in model.namedParameters {
            file.tensors[name] = HostTensor(shape: storedShape(name, p.value.shape), data: try p.value.read())
            if let m = p.momentum {
                file.tensors[momentumPrefix + name] = HostTensor(shape: storedShape(name, m.shape), data: try m.read())
            }
        }
        for (name, t) in model.namedBuffers { file.tensors[name] = HostTensor(shape: t.shape, data: try t.read()) }
        let config = try JSONEncoder().encode(model.config)
        file.metadata = state.extra.merging([
            "format": "sge-checkpoint-1",
            "config": String(decoding: config, as: UTF8.self),
            "epoch": String(state.epoch),
            "step": String(state.step),
            "optimizer_steps": String(state.optimizerSteps),
            "rng_seed": String(state.seed),
        ]) { _, new in new }
        try file.write(path: path)
    }

    /// The model configuration stored in a checkpoint.
    public static func config(of file: SafeTensors, path: String) throws -> ResNetConfig {
        guard let text = file.metadata["config"], let config = try? JSONDecoder().decode(ResNetConfig.self, from: Data(text.utf8)) else {
            throw SGEError.corruptFile(path: path, reason: "no sge model configuration in the metadata (not an sge checkpoint?)")
        }
        return config
    }

    /// Loads weights, running statistics and (if present) momentum into `model`; returns the state.
    @discardableResult
    public static func load(into model: SGEResNet, from file: SafeTensors, path: String) throws -> State {
        func load(_ name: String, into t: Tensor) throws {
            guard let h = file.tensors[name] else { throw SGEError.corruptFile(path: path, reason: "missing tensor '\(name)'") }
            guard h.shape.count == t.count, h.shape == storedShape(name, t.shape) || h.shape == t.shape else {
                throw SGEError.shape("checkpoint \(path): '\(name)' has shape \(h.shape), the model expects \(t.shape)")
            }
            try t.write(h.data)
        }
        for (name, p) in model.namedParameters {
            try load(name, into: p.value)
            if file.tensors[momentumPrefix + name] != nil {
                if p.momentum == nil { p.momentum = Tensor(zeros: p.value.shape, context: p.value.context) }
                try load(momentumPrefix + name, into: p.momentum!)
            }
        }
        for (name, t) in model.namedBuffers { try load(name, into: t) }
        return State(epoch: Int(file.metadata["epoch"] ?? "") ?? 0, step: Int(file.metadata["step"] ?? "") ?? 0,
                     seed: UInt64(file.metadata["rng_seed"] ?? "") ?? 0, optimizerSteps: Int(file.metadata["optimizer_steps"] ?? "") ?? 0,
                     extra: file.metadata)
    }
}
