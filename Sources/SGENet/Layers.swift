import SGEEngine
import SGETensor

/// 2-D convolution, weight [Cout, Cin, KH, KW], He (fan_out) initialisation as torchvision's ResNet.
public final class Conv2d: Layer {
    let backend: any Backend
    public let weight: Parameter
    public let bias: Parameter?
    public let params: Conv2dParams
    public let name: String
    private var input: Tensor?

    public init(_ backend: any Backend, _ cin: Int, _ cout: Int, kernel: Int, stride: Int = 1, padding: Int = 0,
                bias: Bool = false, name: String, rng: inout SeededRNG) throws {
        guard cin > 0, cout > 0, kernel > 0, stride > 0, padding >= 0 else {
            throw SGEError.invalidArgument("\(name): conv \(cin)→\(cout) kernel \(kernel) stride \(stride) padding \(padding) is not valid")
        }
        self.backend = backend
        self.name = name
        params = Conv2dParams(stride: stride, padding: padding)
        // kaiming_normal_(mode="fan_out", nonlinearity="relu"): std = sqrt(2 / (cout * k * k)).
        let std = (2.0 / Float(cout * kernel * kernel)).squareRoot()
        weight = try Parameter(backend, values: rng.normals(cout * cin * kernel * kernel, std: std),
                               shape: [cout, cin, kernel, kernel], label: name + ".weight")
        self.bias = bias ? try Parameter(backend, values: [Float](repeating: 0, count: cout), shape: [cout], label: name + ".bias") : nil
    }

    public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
        try LayerProfiler.measure("Conv2d.forward", backend) {
            input = training ? x : nil
            return try backend.conv2dForward(x, weight: weight.value, bias: bias?.value, params: params)
        }
    }

    public func backward(_ gradOut: Tensor) throws -> Tensor {
        try LayerProfiler.measure("Conv2d.backward", backend) {
            let x = try cached(input, name)
            input = nil
            guard let gx = try backend.conv2dBackward(gradOut, x: x, weight: weight.value, params: params,
                                                      gradWeight: weight.grad, gradBias: bias?.grad, needInputGrad: true)
            else { throw SGEError.invalidArgument("\(name): backend returned no input gradient") }
            return gx
        }
    }

    public var namedParameters: [(String, Parameter)] {
        [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
    }
}

/// BatchNorm2d (eps 1e-5, momentum 0.1, weight 1, bias 0), PyTorch semantics.
public final class BatchNorm2d: Layer {
    let backend: any Backend
    public let weight: Parameter
    public let bias: Parameter
    public let runningMean: Tensor
    public let runningVar: Tensor
    public let name: String
    public var momentum: Float = 0.1
    public var eps: Float = 1e-5
    /// Applies the ReLU that follows in the same pass (forward and backward): BN+ReLU fused.
    public let fusedReLU: Bool
    /// Set by `--sync-bn` under data parallelism: training statistics over every rank's batch.
    public var sync: BatchNormSync?
    var saved: (x: Tensor, stats: BatchNormSaved, out: Tensor?)?

    public init(_ backend: any Backend, _ channels: Int, name: String, fusedReLU: Bool = false) throws {
        self.backend = backend
        self.name = name
        self.fusedReLU = fusedReLU
        weight = try Parameter(backend, values: [Float](repeating: 1, count: channels), shape: [channels], label: name + ".weight", isNormOrGate: true)
        bias = try Parameter(backend, values: [Float](repeating: 0, count: channels), shape: [channels], label: name + ".bias", isNormOrGate: true)
        runningMean = try backend.tensor([Float](repeating: 0, count: channels), [channels], label: name + ".running_mean")
        runningVar = try backend.tensor([Float](repeating: 1, count: channels), [channels], label: name + ".running_var")
    }

    public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
        try LayerProfiler.measure(fusedReLU ? "BatchNorm2d+ReLU.forward" : "BatchNorm2d.forward", backend) {
            if training, let sync { return try sync.forward(self, x) }
            let (out, s) = try backend.batchNormForward(x, gamma: weight.value, beta: bias.value, runningMean: runningMean,
                                                       runningVar: runningVar, training: training, momentum: momentum, eps: eps,
                                                       relu: fusedReLU)
            saved = training ? (x, s, fusedReLU ? out : nil) : nil
            return out
        }
    }

    public func backward(_ gradOut: Tensor) throws -> Tensor {
        try LayerProfiler.measure(fusedReLU ? "BatchNorm2d+ReLU.backward" : "BatchNorm2d.backward", backend) {
            if let sync, saved != nil { return try sync.backward(self, gradOut) }
            let (x, s, out) = try cached(saved, name)
            saved = nil
            return try backend.batchNormBackward(gradOut, x: x, gamma: weight.value, saved: s, gradGamma: weight.grad, gradBeta: bias.grad,
                                                 reluOutput: out)
        }
    }

    public var namedParameters: [(String, Parameter)] { [("weight", weight), ("bias", bias)] }
    public var namedBuffers: [(String, Tensor)] { [("running_mean", runningMean), ("running_var", runningVar)] }
}

/// How SGE's per-group weight/bias start (the paper's default is weight 0, bias 1).
public struct SGEInit: Sendable, Equatable, CustomStringConvertible {
    public var weight: Float
    public var bias: Float
    public init(weight: Float = 0, bias: Float = 1) { self.weight = weight; self.bias = bias }
    public var description: String { "w\(weight)_b\(bias)" }
}

/// Spatial Group-wise Enhance: per group, a position gate sigmoid(w·norm(Σ_k mean_k x_k) + b).
/// Parameters are stored as [G]; checkpoints use PyTorch's [1, G, 1, 1].
public final class SGE: Layer {
    let backend: any Backend
    public let groups: Int
    public let normalize: Bool
    public let weight: Parameter
    public let bias: Parameter
    public let name: String
    private var saved: (Tensor, SGESaved)?

    public init(_ backend: any Backend, groups: Int, normalize: Bool = true, initialization: SGEInit = SGEInit(), name: String) throws {
        guard groups > 0 else { throw SGEError.invalidArgument("\(name): groups must be positive, got \(groups)") }
        self.backend = backend
        self.groups = groups
        self.normalize = normalize
        self.name = name
        weight = try Parameter(backend, values: [Float](repeating: initialization.weight, count: groups), shape: [groups], label: name + ".weight", isNormOrGate: true)
        bias = try Parameter(backend, values: [Float](repeating: initialization.bias, count: groups), shape: [groups], label: name + ".bias", isNormOrGate: true)
    }

    public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
        try LayerProfiler.measure("SGE.forward", backend) {
            let (out, s) = try backend.sgeForward(x, weight: weight.value, bias: bias.value, groups: groups, normalize: normalize)
            saved = training ? (x, s) : nil
            return out
        }
    }

    public func backward(_ gradOut: Tensor) throws -> Tensor {
        try LayerProfiler.measure("SGE.backward", backend) {
            let (x, s) = try cached(saved, name)
            saved = nil
            return try backend.sgeBackward(gradOut, x: x, weight: weight.value, bias: bias.value, groups: groups, normalize: normalize,
                                           saved: s, gradWeight: weight.grad, gradBias: bias.grad)
        }
    }

    /// The gate map sigmoid(a) for `x`, shape [N, G, H, W] (for visualisation).
    public func gate(_ x: Tensor) throws -> Tensor {
        try backend.sgeGate(x, weight: weight.value, bias: bias.value, groups: groups, normalize: normalize)
    }

    public var namedParameters: [(String, Parameter)] { [("weight", weight), ("bias", bias)] }
}

/// Global average pooling [N, C, H, W] → [N, C].
public final class GlobalAvgPool: Layer {
    let backend: any Backend
    /// The input's shape, all backward needs.
    private var inputShape: Shape?
    public init(_ backend: any Backend) { self.backend = backend }
    public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
        inputShape = x.shape
        return try LayerProfiler.measure("GlobalAvgPool.forward", backend) { try backend.globalAvgPoolForward(x) }
    }
    public func backward(_ gradOut: Tensor) throws -> Tensor {
        try LayerProfiler.measure("GlobalAvgPool.backward", backend) {
            try backend.globalAvgPoolBackward(gradOut, inputShape: try cached(inputShape, "avgpool"))
        }
    }
}

/// Max pooling (used by the ImageNet-style stem).
public final class MaxPool2d: Layer {
    let backend: any Backend
    let kernel, stride, padding: Int
    private var saved: (Shape, Tensor)?
    public init(_ backend: any Backend, kernel: Int, stride: Int, padding: Int) {
        self.backend = backend
        (self.kernel, self.stride, self.padding) = (kernel, stride, padding)
    }
    public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
        try LayerProfiler.measure("MaxPool2d.forward", backend) {
            let (out, argmax) = try backend.maxPoolForward(x, kernel: kernel, stride: stride, padding: padding)
            saved = training ? (x.shape, argmax) : nil
            return out
        }
    }
    public func backward(_ gradOut: Tensor) throws -> Tensor {
        try LayerProfiler.measure("MaxPool2d.backward", backend) {
            let (shape, argmax) = try cached(saved, "maxpool")
            saved = nil
            return try backend.maxPoolBackward(gradOut, argmax: argmax, inputShape: shape, kernel: kernel, stride: stride, padding: padding)
        }
    }
}

/// ReLU.
public final class ReLU: Layer {
    let backend: any Backend
    private var output: Tensor?
    public init(_ backend: any Backend) { self.backend = backend }
    public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
        try LayerProfiler.measure("ReLU.forward", backend) {
            let y = try backend.reluForward(x)
            output = training ? y : nil
            return y
        }
    }
    public func backward(_ gradOut: Tensor) throws -> Tensor {
        try LayerProfiler.measure("ReLU.backward", backend) {
            let y = try cached(output, "relu")
            output = nil
            return try backend.reluBackward(out: y, gradOut: gradOut)
        }
    }
}

/// Fully connected layer, weight [out, in] as PyTorch, default PyTorch init U(-1/sqrt(in), 1/sqrt(in)).
public final class Linear: Layer {
    let backend: any Backend
    public let weight: Parameter
    public let bias: Parameter
    public let name: String
    private var input: Tensor?

    public init(_ backend: any Backend, _ inFeatures: Int, _ outFeatures: Int, name: String, rng: inout SeededRNG) throws {
        self.backend = backend
        self.name = name
        let bound = 1 / Float(inFeatures).squareRoot()
        weight = try Parameter(backend, values: rng.uniforms(outFeatures * inFeatures, -bound, bound), shape: [outFeatures, inFeatures], label: name + ".weight")
        bias = try Parameter(backend, values: rng.uniforms(outFeatures, -bound, bound), shape: [outFeatures], label: name + ".bias")
    }

    public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
        try LayerProfiler.measure("Linear.forward", backend) {
            input = training ? x : nil
            return try backend.linearForward(x, weight: weight.value, bias: bias.value)
        }
    }

    public func backward(_ gradOut: Tensor) throws -> Tensor {
        try LayerProfiler.measure("Linear.backward", backend) {
            let x = try cached(input, name)
            input = nil
            return try backend.linearBackward(gradOut, x: x, weight: weight.value, gradWeight: weight.grad, gradBias: bias.grad)
        }
    }

    public var namedParameters: [(String, Parameter)] { [("weight", weight), ("bias", bias)] }
}
