import ArgumentParser
import Foundation
import SGEEngine
import SGENet
import SGETensor

/// Where a model's weights come from: `--weights FILE` (an sge checkpoint, or a PyTorch state_dict
/// as safetensors with `--model`). Shared by infer, import, eval and train.
struct WeightsOptions: ParsableArguments {
    @Option(help: "Weights: an sge checkpoint, or a PyTorch state_dict saved as safetensors (then --model names the network).")
    var weights: String?

    @Option(help: "With a PyTorch state_dict: the network (resnet18, resnet34, resnet50, resnet101, small, resnet20). Widths, SGE groups and classes are read from the tensors.")
    var model: String?

    /// The weights file, required.
    func open() throws -> Weights {
        guard let weights else { throw SGEError.invalidArgument("--weights FILE is required (an sge checkpoint or a PyTorch state_dict)") }
        return try Weights(path: weights, model: model)
    }
}

struct Infer: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a network in eval mode on a tensor of images and write its logits.",
        discussion: """
            Reads the tensor named `input` (N, C, H, W) from --input, runs the network with BatchNorm's running \
            statistics, and writes the tensor `logits` (N, classes) to --out (safetensors, written atomically). \
            The network comes from --weights: an sge checkpoint, or a PyTorch state_dict as safetensors with \
            --model (e.g. `sge infer --model resnet50 --weights W.safetensors --input X.safetensors --out Y.safetensors`).
            """)

    @OptionGroup var device: DeviceOptions
    @OptionGroup var source: WeightsOptions
    @Option(help: "safetensors file holding the tensor `input` (N, C, H, W).") var input: String
    @Option(help: "Where to write the tensor `logits` (safetensors).") var out: String
    @Option(name: .customLong("batch-size"), help: "Images per forward pass.") var batchSize = 64

    func run() throws {
        try runCLI {
            guard batchSize >= 1 else { throw SGEError.invalidArgument("--batch-size \(batchSize): must be at least 1") }
            let weights = try source.open()
            let inputFile = try SafeTensors.read(path: input)
            let x = try inputFile.tensor("input", path: input)
            guard x.shape.rank == 4 else { throw SGEError.shape("\(input): tensor 'input' must be (N, C, H, W), got \(x.shape)") }
            let choice = try device.choose()
            try MemoryEstimate.check(weights.config, batch: min(batchSize, x.shape.dims[0]), channels: x.shape.dims[1],
                                     height: x.shape.dims[2], width: x.shape.dims[3], backend: choice.backend, training: false)
            let model = try weights.model(on: choice.backend)
            let logits = try Inference.logits(model: model, backend: choice.backend, input: x, batchSize: batchSize)
            try SafeTensors(tensors: ["logits": logits], metadata: ["weights": weights.path, "input": input]).write(path: out)
            log("\(weights.config.describe): logits \(logits.shape) written to \(out)")
        }
    }
}

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Write an sge checkpoint from a PyTorch state_dict (safetensors).",
        discussion: """
            `sge import --model resnet50 WEIGHTS.safetensors --out CKPT.safetensors` checks every tensor against the \
            network (missing, unexpected and wrongly shaped keys are all named) and writes an sge checkpoint: \
            the same tensors and names, plus the model configuration, so `sge eval`, `sge infer` and \
            `sge visualize` take it without --model. A .pth file is first converted with \
            scripts/torch-weights.py to-safetensors.
            """)

    @Option(help: "The network the state_dict holds: resnet18, resnet34, resnet50, resnet101, small or resnet20.") var model: String
    @Argument(help: "A PyTorch state_dict saved as safetensors.") var weights: String
    @Option(help: "The sge checkpoint to write.") var out: String
    @Flag(help: "Replace --out if it exists.") var overwrite = false

    func run() throws {
        try runCLI {
            if FileManager.default.fileExists(atPath: out) && !overwrite {
                throw SGEError.invalidArgument("--out \(out) exists; pass --overwrite to replace it")
            }
            let source = try Weights(path: weights, model: model)
            let net = try source.model(on: ReferenceBackend())
            try Checkpoint.save(model: net, state: .init(epoch: 0, step: 0, seed: 0, optimizerSteps: 0, extra: ["imported_from": weights]),
                                path: out)
            let count = net.namedParameters.reduce(0) { $0 + $1.1.value.count }
            log("\(source.config.describe), \(source.config.classes) classes, \(count) parameters: wrote \(out)")
        }
    }
}
