import Foundation
import SGEEngine
import SGETensor

/// What an SGE-ResNet looks like. Codable: checkpoints store it in their metadata.
public struct ResNetConfig: Codable, Sendable, Equatable {
    public enum Block: String, Codable, Sendable { case basic, bottleneck }
    public enum Stem: String, Codable, Sendable {
        /// conv3×3 stride 1 + BN + ReLU (CIFAR / 28×28 inputs).
        case small
        /// conv7×7 stride 2 + BN + ReLU + maxpool 3×3 stride 2 (ImageNet).
        case imagenet
    }
    public var inputChannels: Int
    public var classes: Int
    public var stem: Stem
    public var stemWidth: Int
    public var widths: [Int]
    public var blocks: [Int]
    /// SGE groups per stage (each must divide that stage's output channels).
    public var groups: [Int]
    public var block: Block
    public var useSGE: Bool
    public var sgeNormalize: Bool
    public var sgeInitWeight: Float
    public var sgeInitBias: Float

    public init(inputChannels: Int, classes: Int, stem: Stem, stemWidth: Int, widths: [Int], blocks: [Int], groups: [Int],
                block: Block = .basic, useSGE: Bool = true, sgeNormalize: Bool = true, sgeInit: SGEInit = SGEInit()) {
        self.inputChannels = inputChannels
        self.classes = classes
        self.stem = stem
        self.stemWidth = stemWidth
        self.widths = widths
        self.blocks = blocks
        self.groups = groups
        self.block = block
        self.useSGE = useSGE
        self.sgeNormalize = sgeNormalize
        self.sgeInitWeight = sgeInit.weight
        self.sgeInitBias = sgeInit.bias
    }

    /// The default small SGE-ResNet for 28×28 grey images (Fashion-MNIST): stem 16, stages 16/32/64.
    public static func small(classes: Int = 10, inputChannels: Int = 1) -> ResNetConfig {
        ResNetConfig(inputChannels: inputChannels, classes: classes, stem: .small, stemWidth: 16, widths: [16, 32, 64],
                     blocks: [1, 1, 1], groups: [4, 8, 8])
    }

    /// ResNet-20 for 32×32 colour images (CIFAR-10): 3 stages of 3 basic blocks, widths 16/32/64.
    public static func resnet20(classes: Int = 10) -> ResNetConfig {
        ResNetConfig(inputChannels: 3, classes: classes, stem: .small, stemWidth: 16, widths: [16, 32, 64],
                     blocks: [3, 3, 3], groups: [4, 8, 8])
    }

    /// The ImageNet-layout presets (torchvision's v1.5 ResNets with SGE after the last BatchNorm of
    /// every block, as PytorchInsight's `sge_resnet*`), by name: blocks per stage and block kind.
    public static let imagenetPresets: [String: (blocks: [Int], block: Block)] = [
        "resnet18": ([2, 2, 2, 2], .basic), "resnet34": ([3, 4, 6, 3], .basic),
        "resnet50": ([3, 4, 6, 3], .bottleneck), "resnet101": ([3, 4, 23, 3], .bottleneck),
    ]

    /// Every preset name `--model` accepts.
    public static let presetNames = ["small", "resnet20", "resnet18", "resnet34", "resnet50", "resnet101"]

    /// An ImageNet-layout SGE-ResNet: 7×7 stride-2 stem and 3×3 stride-2 max pool, four stages of
    /// widths w, 2w, 4w, 8w (bottleneck outputs ×4), stride 2 on the first block of stages 2–4 (on
    /// the 3×3 conv in a bottleneck), SGE with `groups` groups in every block (the paper: 64).
    public static func imagenet(_ name: String, classes: Int = 1000, inputChannels: Int = 3, width: Int = 64, groups: Int = 64) throws -> ResNetConfig {
        guard let preset = imagenetPresets[name] else {
            throw SGEError.invalidArgument("--model \(name): expected one of \(presetNames.joined(separator: ", "))")
        }
        return ResNetConfig(inputChannels: inputChannels, classes: classes, stem: .imagenet, stemWidth: width,
                            widths: [width, 2 * width, 4 * width, 8 * width], blocks: preset.blocks,
                            groups: [Int](repeating: groups, count: 4), block: preset.block)
    }

    /// The preset `name` (one of `presetNames`; nil picks by image size: resnet20 from 32×32, small
    /// below) for a dataset's channels and classes. `width` is the base width: stages w, 2w, 4w, 8w
    /// for the ImageNet presets (default 64), w, 2w, 4w with a stem of w for small and resnet20
    /// (default 16).
    public static func preset(_ name: String?, channels: Int, height: Int, classes: Int, width: Int? = nil) throws -> ResNetConfig {
        let name = name ?? (height >= 32 ? "resnet20" : "small")
        if let width, width < 1 { throw SGEError.invalidArgument("--width \(width): must be at least 1") }
        var config: ResNetConfig
        switch name {
        case "small": config = .small(classes: max(classes, 2), inputChannels: channels)
        case "resnet20":
            config = ResNetConfig.resnet20(classes: max(classes, 2))
            config.inputChannels = channels
        default:
            return try imagenet(name, classes: max(classes, 2), inputChannels: channels, width: width ?? 64)
        }
        if let width {
            config.stemWidth = width
            config.widths = [width, 2 * width, 4 * width]
        }
        return config
    }

    public func validate() throws {
        guard !widths.isEmpty, widths.count == blocks.count, widths.count == groups.count else {
            throw SGEError.invalidArgument("model: widths \(widths), blocks \(blocks) and groups \(groups) must have one entry per stage")
        }
        let expansion = block == .bottleneck ? 4 : 1
        for (i, (w, g)) in zip(widths, groups).enumerated() where useSGE {
            guard g > 0, (w * expansion) % g == 0 else {
                throw SGEError.invalidArgument("model: stage \(i + 1) has \(w * expansion) channels, not divisible by \(g) SGE groups; "
                    + "pass --groups with a divisor of each stage's channels (one number, or one per stage)")
            }
        }
        guard blocks.allSatisfy({ $0 > 0 }), widths.allSatisfy({ $0 > 0 }), stemWidth > 0, classes > 1, inputChannels > 0 else {
            throw SGEError.invalidArgument("model: every width, block count, stem width and input channel count must be positive, and classes ≥ 2")
        }
    }
}

/// A residual block with SGE after its last BatchNorm (the paper's placement), before the add.
/// Basic: conv3×3-BN-ReLU-conv3×3-BN-SGE (+ shortcut) → ReLU. Bottleneck: 1×1, 3×3, 1×1 (×4).
public final class ResidualBlock: Layer {
    let backend: any Backend
    let body: [(String, any Layer)]
    let downsample: Sequential?
    /// The block's output max(body + shortcut, 0), kept for the final ReLU's backward.
    private var output: Tensor?

    public init(_ backend: any Backend, kind: ResNetConfig.Block, inChannels: Int, width: Int, stride: Int,
                sgeGroups: Int?, sgeNormalize: Bool, sgeInit: SGEInit, name: String, rng: inout SeededRNG) throws {
        self.backend = backend
        let outChannels = kind == .bottleneck ? width * 4 : width
        var layers: [(String, any Layer)] = []
        switch kind {
        case .basic:
            layers.append(("conv1", try Conv2d(backend, inChannels, width, kernel: 3, stride: stride, padding: 1, name: name + ".conv1", rng: &rng)))
            layers.append(("bn1", try BatchNorm2d(backend, width, name: name + ".bn1", fusedReLU: true)))
            layers.append(("conv2", try Conv2d(backend, width, width, kernel: 3, padding: 1, name: name + ".conv2", rng: &rng)))
            layers.append(("bn2", try BatchNorm2d(backend, width, name: name + ".bn2")))
        case .bottleneck:
            layers.append(("conv1", try Conv2d(backend, inChannels, width, kernel: 1, name: name + ".conv1", rng: &rng)))
            layers.append(("bn1", try BatchNorm2d(backend, width, name: name + ".bn1", fusedReLU: true)))
            layers.append(("conv2", try Conv2d(backend, width, width, kernel: 3, stride: stride, padding: 1, name: name + ".conv2", rng: &rng)))
            layers.append(("bn2", try BatchNorm2d(backend, width, name: name + ".bn2", fusedReLU: true)))
            layers.append(("conv3", try Conv2d(backend, width, outChannels, kernel: 1, name: name + ".conv3", rng: &rng)))
            layers.append(("bn3", try BatchNorm2d(backend, outChannels, name: name + ".bn3")))
        }
        if let g = sgeGroups {
            layers.append(("sge", try SGE(backend, groups: g, normalize: sgeNormalize, initialization: sgeInit, name: name + ".sge")))
        }
        body = layers
        if stride != 1 || inChannels != outChannels {
            downsample = Sequential([
                try Conv2d(backend, inChannels, outChannels, kernel: 1, stride: stride, name: name + ".downsample.0", rng: &rng),
                try BatchNorm2d(backend, outChannels, name: name + ".downsample.1"),
            ])
        } else {
            downsample = nil
        }
    }

    public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
        var h = x
        for (_, l) in body { h = try l.forward(h, training: training) }
        let shortcut = try downsample?.forward(x, training: training) ?? x
        let out = try backend.addReLU(h, shortcut)
        output = training ? out : nil
        return out
    }

    public func backward(_ gradOut: Tensor) throws -> Tensor {
        let y = try cached(output, "residual block")
        output = nil
        let g = try backend.reluBackward(out: y, gradOut: gradOut)
        var gh = g
        for (_, l) in body.reversed() { gh = try l.backward(gh) }
        let gs = try downsample?.backward(g) ?? g
        return try backend.add(gh, gs)
    }

    public var namedParameters: [(String, Parameter)] {
        body.flatMap { prefixed($0.0, $0.1.namedParameters) } + (downsample.map { prefixed("downsample", $0.namedParameters) } ?? [])
    }

    public var namedBuffers: [(String, Tensor)] {
        body.flatMap { prefixed($0.0, $0.1.namedBuffers) } + (downsample.map { prefixed("downsample", $0.namedBuffers) } ?? [])
    }

    /// The block's SGE layer, if any.
    public var sge: SGE? { body.last?.1 as? SGE }
}

/// The SGE-ResNet: stem, stages `layer1...layerK` of residual blocks, global average pool, `fc`.
/// Parameter names follow torchvision/PytorchInsight `state_dict` naming.
public final class SGEResNet: Layer {
    public let config: ResNetConfig
    let backend: any Backend
    let stem: [(String, any Layer)]
    public let stages: [[ResidualBlock]]
    let pool: GlobalAvgPool
    let fc: Linear

    public init(_ backend: any Backend, config: ResNetConfig, seed: UInt64) throws {
        try config.validate()
        self.backend = backend
        self.config = config
        var rng = SeededRNG(seed: seed)
        var s: [(String, any Layer)] = []
        switch config.stem {
        case .small:
            s.append(("conv1", try Conv2d(backend, config.inputChannels, config.stemWidth, kernel: 3, padding: 1, name: "conv1", rng: &rng)))
        case .imagenet:
            s.append(("conv1", try Conv2d(backend, config.inputChannels, config.stemWidth, kernel: 7, stride: 2, padding: 3, name: "conv1", rng: &rng)))
        }
        s.append(("bn1", try BatchNorm2d(backend, config.stemWidth, name: "bn1", fusedReLU: true)))
        if config.stem == .imagenet { s.append(("maxpool", MaxPool2d(backend, kernel: 3, stride: 2, padding: 1))) }
        stem = s
        var channels = config.stemWidth
        var stages: [[ResidualBlock]] = []
        let sgeInit = SGEInit(weight: config.sgeInitWeight, bias: config.sgeInitBias)
        for (i, width) in config.widths.enumerated() {
            var blocks: [ResidualBlock] = []
            for b in 0..<config.blocks[i] {
                let stride = (b == 0 && i > 0) ? 2 : 1
                let block = try ResidualBlock(backend, kind: config.block, inChannels: channels, width: width, stride: stride,
                                              sgeGroups: config.useSGE ? config.groups[i] : nil, sgeNormalize: config.sgeNormalize,
                                              sgeInit: sgeInit, name: "layer\(i + 1).\(b)", rng: &rng)
                channels = config.block == .bottleneck ? width * 4 : width
                blocks.append(block)
            }
            stages.append(blocks)
        }
        self.stages = stages
        pool = GlobalAvgPool(backend)
        fc = try Linear(backend, channels, config.classes, name: "fc", rng: &rng)
    }

    public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
        guard x.shape.rank == 4, x.shape.c == config.inputChannels else {
            throw SGEError.shape("model: input must be [N, \(config.inputChannels), H, W], got \(x.shape)")
        }
        var h = x
        for (_, l) in stem { h = try l.forward(h, training: training) }
        for stage in stages { for block in stage { h = try block.forward(h, training: training) } }
        return try fc.forward(try pool.forward(h, training: training), training: training)
    }

    public func backward(_ gradOut: Tensor) throws -> Tensor {
        var g = try pool.backward(try fc.backward(gradOut))
        try backwardHook?()
        for stage in stages.reversed() { for block in stage.reversed() { g = try block.backward(g); try backwardHook?() } }
        for (_, l) in stem.reversed() { g = try l.backward(g) }
        try backwardHook?()
        return g
    }

    /// Called after fc, after each residual block and after the stem in backward (data parallelism
    /// starts reducing the gradients that are complete; see `DataParallel`).
    public var backwardHook: (() throws -> Void)?

    public var namedParameters: [(String, Parameter)] {
        stem.flatMap { prefixed($0.0, $0.1.namedParameters) }
            + stages.enumerated().flatMap { i, blocks in
                blocks.enumerated().flatMap { b, block in prefixed("layer\(i + 1).\(b)", block.namedParameters) }
            }
            + prefixed("fc", fc.namedParameters)
    }

    public var namedBuffers: [(String, Tensor)] {
        stem.flatMap { prefixed($0.0, $0.1.namedBuffers) }
            + stages.enumerated().flatMap { i, blocks in
                blocks.enumerated().flatMap { b, block in prefixed("layer\(i + 1).\(b)", block.namedBuffers) }
            }
    }

    /// Every SGE layer with its `state_dict` prefix.
    public var sgeLayers: [(String, SGE)] {
        stages.enumerated().flatMap { i, blocks in
            blocks.enumerated().compactMap { b, block in block.sge.map { ("layer\(i + 1).\(b).sge", $0) } }
        }
    }

    /// The stem and stages only (features before pooling), for visualisation: runs forward in eval
    /// mode and calls `visit` with each block's SGE input.
    public func forwardCollectingSGEInputs(_ x: Tensor, visit: (String, SGE, Tensor) throws -> Void) throws {
        var h = x
        for (_, l) in stem { h = try l.forward(h, training: false) }
        for (i, stage) in stages.enumerated() {
            for (b, block) in stage.enumerated() {
                h = try block.forward(h, training: false, visit: { sge, input in try visit("layer\(i + 1).\(b).sge", sge, input) })
            }
        }
    }
}

extension ResidualBlock {
    /// Forward in eval mode, handing the SGE layer's input to `visit`.
    func forward(_ x: Tensor, training: Bool, visit: (SGE, Tensor) throws -> Void) throws -> Tensor {
        var h = x
        for (_, l) in body {
            if let s = l as? SGE { try visit(s, h) }
            h = try l.forward(h, training: training)
        }
        let shortcut = try downsample?.forward(x, training: training) ?? x
        return try backend.addReLU(h, shortcut)
    }
}
