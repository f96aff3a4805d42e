import Foundation
import SGEEngine
import SGETensor

/// Checkpoints in safetensors with PyTorch `state_dict` names: parameters and BatchNorm running
/// statistics under their module names (SGE weight/bias as [1, G, 1, 1] like PytorchInsight),
/// optimizer momentum under `optimizer.momentum_buffer.<name>`, and in the metadata the epoch,
/// step, data-order seed, model configuration and training options, plus a hash per tensor
/// (`hash.<name>`, verified on load). Written atomically.
public enum Checkpoint {
    public static let momentumPrefix = "optimizer.momentum_buffer."
    /// Checkpoints of this format always carry per-tensor hashes (`sge-checkpoint-1` files, written
    /// before hashes existed, and PyTorch files are checked for finiteness only).
    public static let formatVersion = "sge-checkpoint-2"

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
            "format": formatVersion,
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
    ///
    /// Nothing is written into the model unless the whole file passes: every tensor's stored hash
    /// (checked by `SafeTensors.decode` when present; plain PyTorch files have none), every value
    /// finite, every tensor one the model has (PyTorch's `num_batches_tracked` counters are
    /// ignored), every tensor the model needs present with its shape. Each error names the tensor.
    @discardableResult
    public static func load(into model: SGEResNet, from file: SafeTensors, path: String) throws -> State {
        if file.metadata["format"] == formatVersion && file.verifiedTensors.isEmpty && !file.tensors.isEmpty {
            throw SGEError.corruptFile(path: path, reason: "an \(formatVersion) file must carry a hash per tensor, this one has none "
                + "(metadata edited after writing?)")
        }
        var targets: [String: Shape] = [:]
        var optional: Set<String> = []
        for (name, p) in model.namedParameters {
            targets[name] = p.value.shape
            targets[momentumPrefix + name] = p.value.shape
            optional.insert(momentumPrefix + name)
        }
        for (name, t) in model.namedBuffers { targets[name] = t.shape }
        // Every offending key is named at once, so a mismatched file is fixed in one go.
        let unexpected = file.tensors.keys.sorted().filter { targets[$0] == nil && !$0.hasSuffix("num_batches_tracked") }
        let missing = targets.keys.sorted().filter { file.tensors[$0] == nil && !optional.contains($0) }
        var wrongShape: [String] = []
        for name in targets.keys.sorted() {
            guard let h = file.tensors[name] else { continue }
            let shape = targets[name]!
            if !(h.shape == storedShape(name, shape) || h.shape == shape) {
                wrongShape.append("'\(name)' has shape \(h.shape), the model expects \(storedShape(name, shape))")
            }
        }
        if !unexpected.isEmpty || !missing.isEmpty || !wrongShape.isEmpty {
            var problems: [String] = []
            if !missing.isEmpty { problems.append("missing tensor\(missing.count == 1 ? "" : "s") " + missing.map { "'\($0)'" }.joined(separator: ", ")) }
            if !unexpected.isEmpty {
                problems.append("unexpected tensor\(unexpected.count == 1 ? "" : "s") (not part of this model) "
                    + unexpected.map { "'\($0)' \(file.tensors[$0]!.shape)" }.joined(separator: ", "))
            }
            if !wrongShape.isEmpty { problems.append("wrong shape: " + wrongShape.joined(separator: "; ")) }
            let reason = "does not fit the model \(model.config.describe): " + problems.joined(separator: "; ")
                + " (a checkpoint of another model, or other --model/--width/--groups?)"
            if unexpected.isEmpty && missing.isEmpty { throw SGEError.shape("checkpoint \(path) \(reason)") }
            throw SGEError.corruptFile(path: path, reason: reason)
        }
        for name in targets.keys.sorted() {
            guard let h = file.tensors[name] else { continue }
            if let bad = h.data.firstIndex(where: { !$0.isFinite }) {
                let count = h.data.reduce(0) { $0 + ($1.isFinite ? 0 : 1) }
                throw SGEError.corruptFile(path: path, reason: "tensor '\(name)' holds \(h.data[bad]) at index \(bad) "
                    + "(\(count) non-finite value\(count == 1 ? "" : "s")); a checkpoint must hold finite numbers")
            }
        }
        for (name, p) in model.namedParameters {
            try p.value.write(file.tensors[name]!.data)
            if let m = file.tensors[momentumPrefix + name] {
                if p.momentum == nil { p.momentum = p.value.zerosLike() }
                try p.momentum!.write(m.data)
            }
        }
        for (name, t) in model.namedBuffers { try t.write(file.tensors[name]!.data) }
        return State(epoch: Int(file.metadata["epoch"] ?? "") ?? 0, step: Int(file.metadata["step"] ?? "") ?? 0,
                     seed: UInt64(file.metadata["rng_seed"] ?? "") ?? 0, optimizerSteps: Int(file.metadata["optimizer_steps"] ?? "") ?? 0,
                     extra: file.metadata)
    }
}

extension Checkpoint {
    /// Metadata key of the class names (a JSON list), written by `sge train`.
    public static let classNamesKey = "class_names"

    /// The class names as a JSON list.
    public static func encodeClassNames(_ names: [String]) -> String {
        (try? JSONEncoder().encode(names)).map { String(decoding: $0, as: UTF8.self) } ?? "[]"
    }

    /// The class names stored in `metadata`, if any.
    public static func classNames(in metadata: [String: String]) -> [String]? {
        metadata[classNamesKey].flatMap { try? JSONDecoder().decode([String].self, from: Data($0.utf8)) }
    }
}

extension ResNetConfig {
    /// A one-line summary for messages ("basic widths [16, 32, 64] blocks [1, 1, 1], SGE groups [4, 8, 8]").
    public var describe: String {
        "\(block.rawValue) widths \(widths) blocks \(blocks)" + (useSGE ? ", SGE groups \(groups)" : ", no SGE")
    }
}
