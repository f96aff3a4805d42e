import Foundation
import SGEDistributed
import SGEEngine
import SGETensor

/// Synchronised BatchNorm (PyTorch's SyncBatchNorm) for one BatchNorm2d: the batch statistics in
/// training are those of every rank's batch together. Forward all-reduces per-channel [Σx, Σx², M];
/// backward all-reduces [Σg, Σg·x̂]. ∂L/∂γ and ∂L/∂β stay local (data parallelism averages them).
/// Maths in SGEReference/BatchNormSync.swift.
public final class BatchNormSync {
    let communicator: any Communicator
    /// Seconds spent in the statistics' all-reduces (forward and backward), for the step's figures.
    public private(set) var reduceSeconds = 0.0
    /// Values per channel over every rank (M) of each layer's last training forward.
    private var counts: [ObjectIdentifier: Int] = [:]

    public init(communicator: any Communicator) { self.communicator = communicator }

    func forward(_ bn: BatchNorm2d, _ x: Tensor) throws -> Tensor {
        let backend = bn.backend
        let s = x.shape
        let (sum, squares) = try backend.batchNormLocalSums(x)
        // One message: [Σx (C), Σx² (C), M].
        var packed = sum + squares + [Double(s.n * s.h * s.w)]
        let t0 = Date()
        try communicator.allReduceSum(&packed)
        reduceSeconds += Date().timeIntervalSince(t0)
        let c = s.c
        let m = Int(packed[2 * c].rounded())
        guard m > 1 else { throw SGEError.shape("\(bn.name): synchronised BatchNorm needs more than one value per channel, got \(m)") }
        // mean = S1/M, biased var = max(S2/M - mean², 0).
        let mean = (0..<c).map { packed[$0] / Double(m) }
        let variance = (0..<c).map { max(packed[c + $0] / Double(m) - mean[$0] * mean[$0], 0) }
        let invstd = variance.map { 1 / ($0 + Double(bn.eps)).squareRoot() }
        let (out, saved) = try backend.batchNormNormalize(x, gamma: bn.weight.value, beta: bn.bias.value, mean: mean, invstd: invstd,
                                                          relu: bn.fusedReLU)
        // Running statistics as PyTorch: momentum update with the unbiased variance over all M values.
        let mom = Double(bn.momentum)
        let rm = try bn.runningMean.read(), rv = try bn.runningVar.read()
        try bn.runningMean.write((0..<c).map { Float((1 - mom) * Double(rm[$0]) + mom * mean[$0]) })
        try bn.runningVar.write((0..<c).map { Float((1 - mom) * Double(rv[$0]) + mom * variance[$0] * Double(m) / Double(m - 1)) })
        bn.saved = (x, saved, bn.fusedReLU ? out : nil)
        counts[ObjectIdentifier(bn)] = m
        return out
    }

    func backward(_ bn: BatchNorm2d, _ gradOut: Tensor) throws -> Tensor {
        let backend = bn.backend
        let (x, saved, out) = try cached(bn.saved, bn.name)
        bn.saved = nil
        let g = try backend.batchNormMaskedGradient(gradOut, reluOutput: out)
        let (sumGrad, sumGradXhat) = try backend.batchNormBackwardSums(g, x: x, saved: saved)
        // Local parameter gradients (accumulated, as the fused path does).
        let gb = try bn.bias.grad.read(), gg = try bn.weight.grad.read()
        try bn.bias.grad.write(zip(gb, sumGrad).map { $0 + Float($1) })
        try bn.weight.grad.write(zip(gg, sumGradXhat).map { $0 + Float($1) })
        var packed = sumGrad + sumGradXhat
        let t0 = Date()
        try communicator.allReduceSum(&packed)
        reduceSeconds += Date().timeIntervalSince(t0)
        let c = x.shape.c
        return try backend.batchNormBackwardApply(g, x: x, gamma: bn.weight.value, saved: saved, sumGrad: Array(packed[0..<c]),
                                                  sumGradXhat: Array(packed[c..<(2 * c)]), count: counts[ObjectIdentifier(bn)] ?? 0)
    }
}

/// Every BatchNorm2d of a model (stem, blocks, shortcuts).
extension SGEResNet {
    public var batchNormLayers: [BatchNorm2d] {
        func collect(_ layer: any Layer) -> [BatchNorm2d] {
            if let bn = layer as? BatchNorm2d { return [bn] }
            if let seq = layer as? Sequential { return seq.layers.flatMap(collect) }
            if let block = layer as? ResidualBlock { return block.body.flatMap { collect($0.1) } + (block.downsample.map(collect) ?? []) }
            return []
        }
        return stem.flatMap { collect($0.1) } + stages.flatMap { $0.flatMap(collect) }
    }
}
