import Foundation
import SGEDistributed
import SGEEngine
import SGETensor

/// Data-parallel training with PyTorch DistributedDataParallel's semantics, over a `Communicator`:
/// rank 0's parameters and buffers are broadcast at the start; each rank trains on its shard of
/// every batch (`BatchLoader.setShard`); gradients are summed over ranks in flat buckets and divided
/// by the number of ranks before the optimizer step. Buckets hold parameters in reverse order of
/// registration (the order backward completes them); a bucket's `MPI_Iallreduce` starts as soon as
/// the backward pass has finished its last parameter (`SGEResNet.backwardHook`, called after fc,
/// each residual block and the stem), so it overlaps the rest of backward. The time the optimizer
/// still waits for the reductions (not hidden behind backward) is measured per epoch.
public final class DataParallel {
    public let communicator: any Communicator
    public var rank: Int { communicator.rank }
    public var size: Int { communicator.size }
    /// Bytes all-reduced per step (gradient buckets; the per-step loss/stop message excluded).
    public let bytesPerStep: Int
    public let bucketCount: Int
    /// Since the last `takeEpochFigures()`: seconds the step waited for gradient reductions after
    /// backward (not hidden), and seconds copying gradients between device and host for them.
    public private(set) var waitSeconds = 0.0
    public private(set) var copySeconds = 0.0
    public private(set) var steps = 0
    /// Set when any rank asked to stop (SIGINT/SIGTERM): every rank learns it at the same step.
    public private(set) var stopAgreed = false
    public let syncBatchNorm: BatchNormSync?

    final class Bucket {
        let parameters: [Parameter]
        let readyAfterUnit: Int
        let storage: UnsafeMutableBufferPointer<Float>
        var pending: (any PendingReduction)?
        var started = false
        init(parameters: [Parameter], readyAfterUnit: Int) {
            self.parameters = parameters
            self.readyAfterUnit = readyAfterUnit
            storage = .allocate(capacity: max(1, parameters.reduce(0) { $0 + $1.grad.count }))
        }
        deinit { storage.deallocate() }
    }

    let buckets: [Bucket]
    private var unitsDone = 0
    let model: SGEResNet

    /// Attaches to `model` (backward hook, synchronised BatchNorm when `syncBatchNorm`).
    /// `bucketBytes`: the size at which a bucket is closed.
    public init(communicator: any Communicator, model: SGEResNet, syncBatchNorm: Bool, bucketBytes: Int = 512 * 1024) {
        self.communicator = communicator
        self.model = model
        // Backward units in completion order: fc, blocks from the last, the stem.
        var units: [[Parameter]] = [model.fc.namedParameters.map(\.1)]
        for stage in model.stages.reversed() { for block in stage.reversed() { units.append(block.namedParameters.map(\.1)) } }
        units.append(model.stem.flatMap { $0.1.namedParameters.map(\.1) })
        var buckets: [Bucket] = []
        var current: [Parameter] = []
        var bytes = 0
        for (u, unit) in units.enumerated() {
            for p in unit.reversed() {
                current.append(p)
                bytes += 4 * p.grad.count
                if bytes >= bucketBytes {
                    buckets.append(Bucket(parameters: current, readyAfterUnit: u))
                    current = []
                    bytes = 0
                }
            }
        }
        if !current.isEmpty { buckets.append(Bucket(parameters: current, readyAfterUnit: units.count - 1)) }
        self.buckets = buckets
        bucketCount = buckets.count
        bytesPerStep = 4 * buckets.reduce(0) { $0 + $1.storage.count }
        self.syncBatchNorm = syncBatchNorm ? BatchNormSync(communicator: communicator) : nil
        if communicator.size > 1 {
            model.backwardHook = { [unowned self] in try self.unitFinished() }
            for bn in model.batchNormLayers { bn.sync = self.syncBatchNorm }
        }
    }

    /// Copies rank 0's parameters, BatchNorm buffers and momentum buffers to every rank.
    public func broadcastState(optimizer: SGD) throws {
        guard size > 1 else { return }
        var tensors = model.namedParameters.map(\.1.value) + model.namedBuffers.map(\.1)
        tensors += optimizer.parameters.compactMap(\.1.momentum)
        for t in tensors {
            var values = try t.read()
            try communicator.broadcast(&values, root: 0)
            if rank != 0 { try t.write(values) }
        }
    }

    /// The backward hook: one more unit's gradients are complete; start every bucket now ready.
    func unitFinished() throws {
        let unit = unitsDone
        unitsDone += 1
        for b in buckets where !b.started && b.readyAfterUnit <= unit { try start(b) }
        // Let the library progress the reductions already in flight.
        for b in buckets where b.started { _ = try b.pending?.test() }
    }

    private func start(_ b: Bucket) throws {
        let t0 = Date()
        var offset = 0
        for p in b.parameters {
            try p.grad.withHostValues { src in
                _ = UnsafeMutableBufferPointer(rebasing: b.storage[offset..<(offset + src.count)]).initialize(from: src)
                offset += src.count
            }
        }
        copySeconds += Date().timeIntervalSince(t0)
        b.pending = try communicator.startAllReduceSum(b.storage)
        b.started = true
    }

    /// Before the optimizer step: finish every reduction and write the averaged gradients back.
    public func finishGradients() throws {
        guard size > 1 else { return }
        for b in buckets where !b.started { try start(b) }
        let t0 = Date()
        for b in buckets { try b.pending?.wait() }
        waitSeconds += Date().timeIntervalSince(t0)
        let t1 = Date()
        let scale = 1 / Float(size)
        for b in buckets {
            var offset = 0
            for p in b.parameters {
                let n = p.grad.count
                try p.grad.write(b.storage[offset..<(offset + n)].map { $0 * scale })
                offset += n
            }
            b.pending = nil
            b.started = false
        }
        copySeconds += Date().timeIntervalSince(t1)
        unitsDone = 0
        steps += 1
    }

    /// Once per step, every rank: the mean loss over ranks, whether rank 0 wants a progress report
    /// now, and whether any rank asked to stop. One small all-reduce.
    public func agree(loss: Float, reportDue: Bool, stopRequested: Bool, step: Int) throws -> (loss: Float, report: Bool) {
        try FaultInjection.check(rank: rank, step: step)
        var message: [Double] = [Double(loss), stopRequested ? 1 : 0, rank == 0 && reportDue ? 1 : 0]
        if FaultInjection.nanRank == rank { message[0] = .nan }
        try communicator.allReduceSum(&message)
        if message[1] > 0 { stopAgreed = true }
        return (Float(message[0] / Double(size)), message[2] > 0)
    }

    /// Correct count and images seen summed over ranks.
    public func globalCounts(correct: Double, seen: Int) throws -> (correct: Double, seen: Int) {
        var v = [correct, Double(seen)]
        try communicator.allReduceSum(&v)
        return (v[0], Int(v[1].rounded()))
    }

    /// The epoch's figures, then zeroed: (all-reduce wait not hidden, copy seconds, steps).
    public func takeEpochFigures() -> (wait: Double, copy: Double, steps: Int) {
        defer { waitSeconds = 0; copySeconds = 0; steps = 0 }
        return (waitSeconds, copySeconds, steps)
    }
}

/// Test hooks for the fault tests: `SGE_TEST_FAIL_RANK=R SGE_TEST_FAIL_STEP=S` makes rank R throw at
/// step S (1-based); `SGE_TEST_NAN_RANK=R` makes rank R report a NaN loss.
enum FaultInjection {
    static let environment = ProcessInfo.processInfo.environment
    static let failRank = environment["SGE_TEST_FAIL_RANK"].flatMap(Int.init)
    static let failStep = environment["SGE_TEST_FAIL_STEP"].flatMap(Int.init) ?? 1
    static let nanRank = environment["SGE_TEST_NAN_RANK"].flatMap(Int.init)

    static func check(rank: Int, step: Int) throws {
        if failRank == rank && step + 1 >= failStep {
            throw SGEError.io(path: "training data", reason: "injected failure (SGE_TEST_FAIL_RANK=\(rank)) at step \(step + 1)")
        }
    }
}
