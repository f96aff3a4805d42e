import Foundation
import SGEDistributed
import SGEEngine
import SGETensor

extension DataParallel {
    /// Refuses to start when the ranks were given different configurations: every rank contributes
    /// a hash of `description` (options, model, data), and the ranks that differ from rank 0 are named.
    public func checkSameConfiguration(_ description: String) throws {
        let hashes = try communicator.allGather(Integrity.fnv1a64(description.utf8))
        let differing = hashes.indices.filter { hashes[$0] != hashes[0] }
        guard differing.isEmpty else {
            throw SGEError.invalidArgument("the ranks were started with different options, model or data: rank(s) "
                + differing.map(String.init).joined(separator: ", ") + " differ from rank 0 (configuration hashes "
                + hashes.map { String($0, radix: 16) }.joined(separator: ", ") + "); start every rank with the same command line")
        }
    }

    /// Refuses to resume a checkpoint written with another number of ranks (absent: 1).
    public static func checkWorldSize(checkpoint path: String, size: Int) throws {
        let file = try SafeTensors.read(path: path)
        let stored = file.metadata["world_size"].flatMap(Int.init) ?? 1
        guard stored == size else {
            throw SGEError.invalidArgument("resume: \(path) was written by a run of \(stored) rank(s) and this run has \(size); "
                + "--batch-size is per rank, so the data order and steps would differ: resume with mpirun -np \(stored)"
                + (stored == 1 ? " or without mpirun" : ""))
        }
    }

    /// Loss, accuracy and confusion matrix over `data`, each rank evaluating a contiguous slice and
    /// the sums all-reduced. An interruption on any rank (SIGINT/SIGTERM) is agreed after the slices.
    public func evaluate(data: any LabelledImages, backend: any Backend, batchSize: Int,
                         progress: ((Int, Int) -> Void)? = nil) throws -> Evaluation {
        // Without --sync-bn each rank's running statistics are its own: evaluate with rank 0's (the
        // checkpoint's), as DDP's broadcast_buffers does.
        if syncBatchNorm == nil {
            for t in model.namedBuffers.map(\.1) {
                var values = try t.read()
                try communicator.broadcast(&values, root: 0)
                if rank != 0 { try t.write(values) }
            }
        }
        let lo = data.count * rank / size, hi = data.count * (rank + 1) / size
        let slice = data.slice(lo..<hi)
        let k = model.config.classes
        var local: Evaluation
        var interrupted = 0.0
        if slice.count > 0 {
            do {
                local = try Trainer.evaluate(model: model, backend: backend, data: slice, batchSize: batchSize) { done, _ in
                    progress?(done * self.size, data.count)
                }
            } catch is EvaluationInterrupted {
                interrupted = 1
                local = Evaluation(loss: 0, accuracy: 0, confusion: [[Int]](repeating: [Int](repeating: 0, count: k), count: k), count: 0)
            }
        } else {
            local = Evaluation(loss: 0, accuracy: 0, confusion: [[Int]](repeating: [Int](repeating: 0, count: k), count: k), count: 0)
        }
        // [loss·count, count, interrupted, confusion (k·k)].
        var sums = [local.loss * Double(local.count), Double(local.count), interrupted] + local.confusion.flatMap { $0.map(Double.init) }
        try communicator.allReduceSum(&sums)
        if sums[2] > 0 { throw EvaluationInterrupted(done: Int(sums[1]), total: data.count) }
        let count = Int(sums[1].rounded())
        let confusion = (0..<k).map { i in (0..<k).map { j in Int(sums[3 + i * k + j].rounded()) } }
        let correct = (0..<k).reduce(0) { $0 + confusion[$1][$1] }
        return Evaluation(loss: sums[0] / Double(max(count, 1)), accuracy: Double(correct) / Double(max(count, 1)),
                          confusion: confusion, count: count)
    }

    /// FNV-1a over the bytes of every parameter (to check that ranks hold the same model; BatchNorm's
    /// running statistics are local to each rank without --sync-bn and are left out).
    public static func parameterHash(_ model: SGEResNet) throws -> UInt64 {
        var bytes: [UInt8] = []
        for t in model.namedParameters.map(\.1.value) {
            for v in try t.read() { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 } }
        }
        return Integrity.fnv1a64(bytes)
    }
}

extension Trainer {
    /// Data parallelism for this trainer: shards the loader, hooks the model, and from now on
    /// aggregates figures and evaluation over the ranks (nothing changes with one rank).
    public func attach(_ dp: DataParallel) throws {
        guard dp.size > 1 else { return }
        guard train.count / dp.size >= options.batchSize else {
            throw SGEError.invalidArgument("train: \(dp.size) ranks × --batch-size \(options.batchSize) need at least "
                + "\(dp.size * options.batchSize) training images; there are \(train.count)")
        }
        dataParallel = dp
        loader.setShard(rank: dp.rank, count: dp.size)
        extraMetadata["world_size"] = String(dp.size)
        extraMetadata["sync_bn"] = dp.syncBatchNorm == nil ? "0" : "1"
    }

    /// Whether to stop after this step: SIGINT/SIGTERM here, or on any rank at the same step.
    var stopRequested: Bool { dataParallel.map(\.stopAgreed) ?? (trainingStopRequested != 0) }

    /// Images/s over every rank.
    var worldSize: Int { dataParallel?.size ?? 1 }

    /// Accuracy of the step loop so far, over every rank.
    func runningAccuracy(_ correctSum: Tensor, seen: Int) throws -> Double {
        let correct = Double(try correctSum.read()[0])
        guard let dp = dataParallel else { return correct / Double(max(seen, 1)) }
        let total = try dp.globalCounts(correct: correct, seen: seen)
        return total.correct / Double(max(total.seen, 1))
    }
}
