import Foundation
import SGEEngine
import SGETensor

/// A trainable tensor with its gradient (accumulated by backward, zeroed by the optimizer) and its
/// optimizer state.
public final class Parameter {
    public let value: Tensor
    public let grad: Tensor
    /// SGD momentum buffer, created by the optimizer on its first step.
    public var momentum: Tensor?
    /// BatchNorm and SGE parameters, which `--no-decay-norm` exempts from weight decay.
    public let isNormOrGate: Bool

    init(_ backend: any Backend, values: [Float], shape: Shape, label: String, isNormOrGate: Bool = false) throws {
        value = try backend.tensor(values, shape, label: label)
        grad = backend.zeros(shape, label: label + ".grad")
        self.isNormOrGate = isNormOrGate
    }
}

/// A network piece with a forward and a backward pass. Backward consumes what the last forward
/// cached, accumulates parameter gradients and returns the gradient of the input.
public protocol Layer: AnyObject {
    func forward(_ x: Tensor, training: Bool) throws -> Tensor
    func backward(_ gradOut: Tensor) throws -> Tensor
    /// Parameters with their names relative to this layer, in PyTorch `state_dict` order.
    var namedParameters: [(String, Parameter)] { get }
    /// Non-trainable state (BatchNorm running statistics), named as in PyTorch.
    var namedBuffers: [(String, Tensor)] { get }
}

extension Layer {
    public var namedParameters: [(String, Parameter)] { [] }
    public var namedBuffers: [(String, Tensor)] { [] }
}

/// Prefixes child names: `prefix(“layer1.0”, [(“conv1.weight”, p)])` → `layer1.0.conv1.weight`.
func prefixed<T>(_ prefix: String, _ items: [(String, T)]) -> [(String, T)] {
    items.map { ("\(prefix).\($0.0)", $0.1) }
}

/// Layers applied in order; children are named by their index ("0", "1", ...) as in PyTorch.
public final class Sequential: Layer {
    public let layers: [any Layer]
    public let names: [String]

    public init(_ layers: [any Layer], names: [String]? = nil) {
        self.layers = layers
        self.names = names ?? layers.indices.map(String.init)
    }

    public func forward(_ x: Tensor, training: Bool) throws -> Tensor {
        var h = x
        for l in layers { h = try l.forward(h, training: training) }
        return h
    }

    public func backward(_ gradOut: Tensor) throws -> Tensor {
        var g = gradOut
        for l in layers.reversed() { g = try l.backward(g) }
        return g
    }

    public var namedParameters: [(String, Parameter)] {
        zip(names, layers).flatMap { prefixed($0.0, $0.1.namedParameters) }
    }

    public var namedBuffers: [(String, Tensor)] {
        zip(names, layers).flatMap { prefixed($0.0, $0.1.namedBuffers) }
    }
}

/// Throws unless `backward` is called after a training `forward`.
func cached<T>(_ value: T?, _ layer: String) throws -> T {
    guard let value else { throw SGEError.invalidArgument("\(layer): backward called without a preceding forward") }
    return value
}

/// Per-layer-kind device time, collected when `SGE_PROFILE=1` (each timed call synchronises the
/// backend, so profiling slows training; `sge train` prints the table at the end).
public enum LayerProfiler {
    public static let enabled = (ProcessInfo.processInfo.environment["SGE_PROFILE"] ?? "0") != "0"
    nonisolated(unsafe) public private(set) static var seconds: [String: Double] = [:]
    nonisolated(unsafe) public private(set) static var calls: [String: Int] = [:]

    @inline(__always)
    static func measure<T>(_ name: String, _ backend: any Backend, _ body: () throws -> T) throws -> T {
        guard enabled else { return try body() }
        try backend.synchronize()
        let start = Date()
        let result = try body()
        try backend.synchronize()
        seconds[name, default: 0] += Date().timeIntervalSince(start)
        calls[name, default: 0] += 1
        return result
    }

    /// The collected times, largest first.
    public static func report() -> String {
        let total = seconds.values.reduce(0, +)
        return seconds.sorted { $0.value > $1.value }.map { name, s in
            String(format: "  %-22@ %8.3f s  %5.1f%%  %6d calls", name as NSString, s, 100 * s / max(total, 1e-9), calls[name] ?? 0)
        }.joined(separator: "\n")
    }
}
