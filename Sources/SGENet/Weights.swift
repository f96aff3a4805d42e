import Foundation
import SGEEngine
import SGETensor

/// Model weights from a file: an sge checkpoint (its model configuration is in the metadata) or a
/// PyTorch `state_dict` saved as safetensors with `model.state_dict()`'s keys (for example by
/// `scripts/torch-weights.py to-safetensors`), whose layout comes from a preset name (`--model`)
/// and the shapes of its tensors:
/// - input channels and stem width from `conv1.weight` (7×7: the ImageNet stem);
/// - each stage's width from `layer<i>.0.conv1.weight`'s output channels;
/// - SGE groups per stage from `layer<i>.0.sge.weight` ((1, G, 1, 1) or (G)); no SGE tensors: no SGE;
/// - the number of classes from `fc.weight` (classes × features).
/// int64 `num_batches_tracked` counters are read and ignored. Any tensor the model lacks, any it
/// needs that is missing and any with the wrong shape is an error naming every such key.
public struct Weights {
    public let path: String
    public let file: SafeTensors
    public let config: ResNetConfig
    /// True for an sge checkpoint (configuration from its metadata), false for a PyTorch state_dict.
    public let isCheckpoint: Bool

    /// Reads `path`; `model` (a preset name) is required for a PyTorch state_dict and, for an sge
    /// checkpoint, must agree with the stored configuration's layout when given.
    public init(path: String, model: String?) throws {
        guard FileManager.default.fileExists(atPath: path) else { throw SGEError.io(path: path, reason: "no such weights file") }
        let file = try SafeTensors.read(path: path)
        self.path = path
        self.file = file
        if file.metadata["config"] != nil {
            let config = try Checkpoint.config(of: file, path: path)
            if let model, let preset = ResNetConfig.imagenetPresets[model],
               preset.blocks != config.blocks || preset.block != config.block {
                throw SGEError.invalidArgument("--model \(model) does not match \(path), an sge checkpoint of a \(config.describe) "
                    + "(leave out --model: a checkpoint names its own model)")
            }
            self.config = config
            isCheckpoint = true
        } else {
            guard let model else {
                throw SGEError.invalidArgument("\(path) is a plain state_dict without sge's model configuration: "
                    + "pass --model (\(ResNetConfig.presetNames.joined(separator: ", "))) to say which network it holds")
            }
            config = try Weights.config(ofStateDict: file, preset: model, path: path)
            isCheckpoint = false
        }
    }

    /// The configuration of a PyTorch state_dict of the preset `preset`, read from tensor shapes.
    public static func config(ofStateDict file: SafeTensors, preset: String, path: String) throws -> ResNetConfig {
        func shape(_ name: String) throws -> [Int] {
            guard let t = file.tensors[name] else {
                let some = file.tensors.keys.sorted().prefix(8).joined(separator: ", ")
                throw SGEError.corruptFile(path: path, reason: "no tensor '\(name)', which every SGE-ResNet state_dict has "
                    + "(the file has \(file.tensors.count) tensors: \(some)\(file.tensors.count > 8 ? ", ..." : ""))")
            }
            return t.shape.dims
        }
        let conv1 = try shape("conv1.weight")
        let fc = try shape("fc.weight")
        guard conv1.count == 4, fc.count == 2 else {
            throw SGEError.shape("\(path): conv1.weight has shape \(conv1) (expected 4 dimensions) and fc.weight \(fc) (expected 2)")
        }
        var config = try ResNetConfig.preset(preset, channels: conv1[1], height: 224, classes: fc[0])
        config.stemWidth = conv1[0]
        if conv1[2] == 3 && ResNetConfig.imagenetPresets[preset] == nil { config.stem = .small }
        let hasSGE = file.tensors.keys.contains { $0.contains(".sge.") }
        config.useSGE = hasSGE
        for i in config.widths.indices {
            config.widths[i] = try shape("layer\(i + 1).0.conv1.weight")[0]
            if hasSGE { config.groups[i] = try shape("layer\(i + 1).0.sge.weight").reduce(1, *) }
        }
        try config.validate()
        return config
    }

    /// The model with these weights on `backend` (parameters and BatchNorm statistics; momentum too
    /// when the file holds it).
    public func model(on backend: any Backend) throws -> SGEResNet {
        let model = try SGEResNet(backend, config: config, seed: 0)
        try Checkpoint.load(into: model, from: file, path: path)
        return model
    }

    /// The class names stored in an sge checkpoint, if any.
    public var classNames: [String]? { Checkpoint.classNames(in: file.metadata) }
}

/// `sge infer`: logits of a batch of images in eval mode (BatchNorm running statistics).
public enum Inference {
    /// Runs `model` on `input` (N×C×H×W) in batches of at most `batchSize`; returns N×classes logits.
    public static func logits(model: SGEResNet, backend: any Backend, input: HostTensor, batchSize: Int) throws -> HostTensor {
        let config = model.config
        guard input.shape.rank == 4, input.shape.dims[1] == config.inputChannels else {
            throw SGEError.shape("infer: the input must be (N, \(config.inputChannels), H, W) for this model, got \(input.shape)")
        }
        guard batchSize >= 1 else { throw SGEError.invalidArgument("infer: --batch-size \(batchSize) must be at least 1") }
        if let bad = input.data.firstIndex(where: { !$0.isFinite }) {
            throw SGEError.numeric("infer: the input holds \(input.data[bad]) at index \(bad); inputs must be finite")
        }
        let n = input.shape.dims[0], perImage = input.data.count / max(n, 1)
        let (h, w) = (input.shape.dims[2], input.shape.dims[3])
        var out: [Float] = []
        out.reserveCapacity(n * config.classes)
        var start = 0
        while start < n {
            let count = min(batchSize, n - start)
            let x = try backend.tensor(Array(input.data[(start * perImage)..<((start + count) * perImage)]),
                                       [count, config.inputChannels, h, w], label: "input")
            out += try model.forward(x, training: false).read()
            start += count
        }
        return HostTensor(shape: [n, config.classes], data: out)
    }
}
