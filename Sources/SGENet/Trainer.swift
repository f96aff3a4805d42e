import Foundation
import SGEEngine
import SGETensor

/// Everything `sge train` can set. Codable: stored in checkpoints' metadata.
public struct TrainOptions: Codable, Sendable, Equatable {
    public var epochs = 2
    public var batchSize = 128
    public var lr: Float = 0.1
    public var momentum: Float = 0.9
    public var weightDecay: Float = 5e-4
    public var nesterov = false
    public var noDecayNormAndGate = false
    public var schedule: LRSchedule.Kind = .cosine
    public var warmupEpochs: Double = 0.2
    public var milestones: [Int] = []
    public var seed: UInt64 = 1
    public var cropPadding = 0
    public var horizontalFlip = false
    /// Stop each epoch after this many steps (quick runs and tests); nil = the whole epoch.
    public var stepsPerEpochLimit: Int?
    /// Log a "step" metrics line every this many steps (0 = epoch lines only).
    public var logEvery = 0
    public init() {}
}

/// One epoch's summary.
public struct EpochMetrics: Sendable {
    public var epoch: Int
    public var step: Int
    public var trainLoss: Double
    public var trainAccuracy: Double
    public var testLoss: Double?
    public var testAccuracy: Double?
    public var lr: Float
    public var imagesPerSecond: Double
    public var seconds: Double
    /// Seconds the step loop waited for the next batch (0 when preparation overlaps compute fully).
    public var dataWaitSeconds: Double
    /// Seconds spent enqueueing work on the host.
    public var hostSeconds: Double
    /// Seconds the host waited for the device.
    public var deviceWaitSeconds: Double
    /// Data parallelism: gradient bytes all-reduced per step, and seconds the steps waited for
    /// those reductions after backward (not hidden behind it); 0 with one process.
    public var allReduceBytesPerStep = 0
    public var allReduceWaitSeconds = 0.0
}

/// The result of evaluating a model on a dataset.
public struct Evaluation: Sendable {
    public var loss: Double
    public var accuracy: Double
    /// confusion[true][predicted]
    public var confusion: [[Int]]
    public var count: Int
    /// k of the top-k accuracy: min(5, classes).
    public var topK = 1
    /// Fraction of images whose label is among the k largest logits (ties: lower class first, as
    /// for top-1).
    public var topKAccuracy = 0.0
    /// Images skipped as corrupt or unreadable (image folders; each replaced by the next readable).
    public var skipped = SkippedImages()
    public var perClassAccuracy: [Double] {
        confusion.enumerated().map { i, row in
            let total = row.reduce(0, +)
            return total == 0 ? 0 : Double(row[i]) / Double(total)
        }
    }
}

/// What the trainer reports as it goes.
public protocol TrainingObserver: AnyObject {
    func stepFinished(epoch: Int, step: Int, stepInEpoch: Int, stepsInEpoch: Int, loss: Double, accuracy: Double, imagesPerSecond: Double, lr: Float)
    func epochFinished(_ metrics: EpochMetrics)
    func message(_ text: String)
    /// Evaluation progress: `done` of `total` images (default: nothing).
    func evaluationProgress(done: Int, total: Int)
}

extension TrainingObserver {
    public func evaluationProgress(done: Int, total: Int) {}
}

/// Thrown by `Trainer.evaluate` when SIGINT stops an evaluation part-way.
public struct EvaluationInterrupted: Error, CustomStringConvertible {
    public let done: Int
    public let total: Int
    public var description: String { "evaluation interrupted after \(done) of \(total) images" }
}

/// Set from a SIGINT handler: finish the current step (or evaluation batch), checkpoint, stop.
nonisolated(unsafe) public var trainingStopRequested: sig_atomic_t = 0

/// Trains an SGE-ResNet with SGD on a dataset; evaluates, checkpoints and resumes.
public final class Trainer {
    public let backend: any Backend
    public let model: SGEResNet
    public let options: TrainOptions
    public let optimizer: SGD
    public let train: any LabelledImages
    public let test: (any LabelledImages)?
    public let loader: any BatchSource
    public var checkpointPath: String?
    public var metricsPath: String?
    public weak var observer: (any TrainingObserver)?
    /// Global step (optimizer steps taken) and epoch position.
    public private(set) var step = 0
    public private(set) var epoch = 0
    /// Every step's loss, for tests of determinism and resume.
    public private(set) var stepLosses: [Float] = []

    /// The checkpoint this run resumed from, and the (epoch, step) of the last checkpoint it wrote.
    public private(set) var resumedFrom: String?
    public private(set) var lastSaved: (epoch: Int, step: Int)?
    /// Data parallelism over several ranks (`attach`); nil with one process.
    public internal(set) var dataParallel: DataParallel?
    /// Added to the checkpoint's metadata (data parallelism stores the number of ranks).
    public var extraMetadata: [String: String] = [:]

    public init(backend: any Backend, model: SGEResNet, train: any LabelledImages, test: (any LabelledImages)?, options: TrainOptions) throws {
        try options.validate()
        guard train.count >= options.batchSize else {
            throw SGEError.invalidArgument("train: --batch-size \(options.batchSize) is larger than the \(train.count) training images "
                + "(an epoch would have no full batch); use --batch-size \(train.count) or less")
        }
        // Before any allocation: the step's estimated memory against the device's (drivers may assert).
        try MemoryEstimate.check(model.config, batch: options.batchSize, channels: train.channels, height: train.height,
                                 width: train.width, backend: backend)
        guard options.batchSize > 0, options.epochs > 0, options.lr > 0 else {
            throw SGEError.invalidArgument("train: batch size, epochs and learning rate must be positive (got \(options.batchSize), \(options.epochs), \(options.lr))")
        }
        guard train.channels == model.config.inputChannels, train.classes <= model.config.classes else {
            throw SGEError.invalidArgument("train: dataset has \(train.channels) channels and \(train.classes) classes; model expects \(model.config.inputChannels) and \(model.config.classes)")
        }
        (self.backend, self.model, self.options, self.train, self.test) = (backend, model, options, train, test)
        optimizer = try SGD(backend, parameters: model.namedParameters, momentum: options.momentum, weightDecay: options.weightDecay,
                            nesterov: options.nesterov, noDecayNormAndGate: options.noDecayNormAndGate)
        loader = try train.makeBatches(batchSize: options.batchSize, shuffle: true, seed: options.seed,
                                       augmentation: Augmentation(cropPadding: options.cropPadding, horizontalFlip: options.horizontalFlip),
                                       dropLast: true, training: true)
    }

    public var stepsPerEpoch: Int { min(loader.batchesPerEpoch, options.stepsPerEpochLimit ?? Int.max) }

    public var schedule: LRSchedule {
        LRSchedule(kind: options.schedule, baseLR: options.lr, warmupSteps: Int(options.warmupEpochs * Double(stepsPerEpoch)),
                   totalSteps: options.epochs * stepsPerEpoch, stepsPerEpoch: stepsPerEpoch, milestones: options.milestones)
    }

    /// Restores weights, running statistics, momentum and position from a checkpoint, after
    /// checking (before loading anything) that it was written by a run of the same model, options
    /// and data (`ResumeCheck`), and that every tensor is intact (`Checkpoint.load`).
    public func resume(from path: String) throws {
        let file = try SafeTensors.read(path: path)
        try ResumeCheck.verify(file: file, path: path, config: model.config, options: options, train: train)
        let state = try Checkpoint.load(into: model, from: file, path: path)
        guard state.epoch < options.epochs else {
            throw SGEError.invalidArgument("resume: \(path) has finished \(state.epoch) epoch(s), --epochs is \(options.epochs): "
                + "nothing left to train; pass --epochs \(state.epoch + 1) or more to train further")
        }
        step = state.step
        epoch = state.epoch
        optimizer.restore(steps: state.optimizerSteps)
        resumedFrom = path
    }

    func saveCheckpoint() throws {
        guard let checkpointPath else { return }
        let optionsJSON = String(decoding: try JSONEncoder().encode(self.options), as: UTF8.self)
        try Checkpoint.save(model: model, state: .init(epoch: epoch, step: step, seed: options.seed, optimizerSteps: optimizer.steps,
                                                      extra: ["train_options": optionsJSON, "dataset": train.source,
                                                              "train_count": String(train.count),
                                                              Checkpoint.classNamesKey: Checkpoint.encodeClassNames(train.classNames)]
                                                              .merging(extraMetadata) { a, _ in a }),
                            path: checkpointPath)
        lastSaved = (epoch, step)
    }

    /// Which checkpoint survives a failure now, for messages.
    var keptCheckpointText: String {
        if let lastSaved, let checkpointPath {
            return "the last checkpoint this run wrote (\(checkpointPath), epoch \(lastSaved.epoch), step \(lastSaved.step)) is kept"
        }
        if let resumedFrom { return "the checkpoint this run resumed from (\(resumedFrom)) is unchanged" }
        return "this run has written no checkpoint yet"
    }

    /// Trains until `options.epochs` are done or SIGINT; returns each finished epoch's metrics.
    /// Trains for `count` more optimizer steps (crossing epochs as needed), without evaluation.
    public func runSteps(_ count: Int) throws {
        stopAtStep = step + count
        defer { stopAtStep = nil }
        try run()
    }

    /// Writes the checkpoint now (if a path is set).
    public func saveCheckpointNow() throws { try saveCheckpoint() }

    var stopAtStep: Int?

    /// The batch's images and labels, kept while the batch shape stays (rewritten every step, so
    /// a step allocates no host storage for them), and the step's memory-plan key.
    private var inputs: (images: Tensor, labels: Tensor, key: String)?

    private func stepInputs(_ shape: Shape, _ labelsShape: Shape) throws -> (images: Tensor, labels: Tensor, key: String) {
        if let inputs, inputs.images.shape == shape, inputs.labels.shape == labelsShape { return inputs }
        let made = (images: backend.zeros(shape, label: "images"), labels: backend.zeros(labelsShape, label: "labels"),
                    key: "train \(model.config) \(shape)")
        inputs = made
        return made
    }

    @discardableResult
    public func run() throws -> [EpochMetrics] {
        var results: [EpochMetrics] = []
        let schedule = self.schedule
        let labelsShape: Shape = [options.batchSize]
        while epoch < options.epochs {
            let skip = step - epoch * stepsPerEpoch
            loader.startEpoch(epoch, skipBatches: max(skip, 0))
            // The loss is read every step (to stop on NaN), so its sum is kept on the host; the
            // correct count stays on the device and is read only when progress is reported.
            var lossSum = 0.0
            let correctSum = backend.zeros([1], label: "correct sum")
            // Uploaded before the first step, so every step requests the same device buffers.
            try correctSum.prefetchToDevice()
            var seen = 0
            var dataWait = 0.0, hostTime = 0.0, deviceWait = 0.0
            let epochStart = Date()
            var lastReport = Date.distantPast
            var stepInEpoch = max(skip, 0)
            var lr = schedule.lr(at: step)
            while stepInEpoch < stepsPerEpoch {
                if stopRequested { break }
                if let stop = stopAtStep, step >= stop { return results }
                let t0 = Date()
                guard let batch = loader.next() else { break }
                let t1 = Date()
                dataWait += t1.timeIntervalSince(t0)
                lr = schedule.lr(at: step)
                // The step's device buffers follow the memory plan of (model, batch shape).
                let inputs = try stepInputs(batch.shape, labelsShape)
                backend.beginStep(inputs.key)
                var stepLoss: Float = 0
                do {
                    defer { backend.endStep() }
                    try inputs.images.write(batch.images)
                    try inputs.labels.write(batch.labels.map(Float.init))
                    try inputs.images.prefetchToDevice()
                    let (loss, correct) = try model.trainStep(inputs.images, labels: inputs.labels, optimizer: optimizer, lr: lr,
                                                              beforeUpdate: dataParallel?.finishGradients)
                    try backend.axpby(alpha: 1, correct, beta: 1, correctSum)
                    let t2 = Date()
                    hostTime += t2.timeIntervalSince(t1)
                    try withUnsafeMutablePointer(to: &stepLoss) { try loss.read(into: UnsafeMutableBufferPointer(start: $0, count: 1)) }
                    deviceWait += Date().timeIntervalSince(t2)
                }
                var reportDue = Date().timeIntervalSince(lastReport) > 0.5
                if let dp = dataParallel {
                    (stepLoss, reportDue) = try dp.agree(loss: stepLoss, reportDue: reportDue, stopRequested: trainingStopRequested != 0, step: step)
                }
                stepLosses.append(stepLoss)
                lossSum += Double(stepLoss)
                guard stepLoss.isFinite else {
                    throw SGEError.numeric("loss is \(stepLoss) at epoch \(epoch + 1), step \(step + 1) (lr \(lr)); \(keptCheckpointText). Try a lower --lr.")
                }
                step += 1
                stepInEpoch += 1
                seen += batch.count
                let now = Date()
                let logStep = options.logEvery > 0 && step % options.logEvery == 0
                if reportDue || stepInEpoch == stepsPerEpoch || logStep {
                    lastReport = now
                    let stepsDone = Double(stepInEpoch - max(skip, 0))
                    let meanLoss = lossSum / stepsDone
                    let acc = try runningAccuracy(correctSum, seen: seen)
                    let ips = Double(seen * worldSize) / now.timeIntervalSince(epochStart)
                    observer?.stepFinished(epoch: epoch, step: step, stepInEpoch: stepInEpoch, stepsInEpoch: stepsPerEpoch,
                                           loss: meanLoss, accuracy: acc, imagesPerSecond: ips, lr: lr)
                    if logStep {
                        try appendMetrics(MetricsLine(epoch: epoch + 1, step: step, trainLoss: meanLoss, trainAccuracy: acc, lr: lr,
                                                      imagesPerSecond: ips))
                    }
                }
            }
            if stopRequested {
                try saveCheckpoint()
                observer?.message("stopped at epoch \(epoch + 1), step \(step)\(checkpointPath.map { "; checkpoint written to \($0) (resume with --resume \($0))" } ?? "")")
                return results
            }
            let seconds = Date().timeIntervalSince(epochStart)
            let stepsDone = max(stepInEpoch - max(skip, 0), 1)
            var metrics = EpochMetrics(epoch: epoch + 1, step: step, trainLoss: lossSum / Double(stepsDone),
                                       trainAccuracy: try runningAccuracy(correctSum, seen: seen), testLoss: nil, testAccuracy: nil, lr: lr,
                                       imagesPerSecond: Double(seen * worldSize) / seconds, seconds: seconds,
                                       dataWaitSeconds: dataWait, hostSeconds: hostTime, deviceWaitSeconds: deviceWait)
            if let dp = dataParallel {
                let figures = dp.takeEpochFigures()
                metrics.allReduceBytesPerStep = dp.bytesPerStep
                metrics.allReduceWaitSeconds = figures.wait
            }
            epoch += 1
            if let warning = loader.skipped.warning("epoch \(epoch)") { observer?.message(warning) }
            if let test {
                do {
                    let e = try evaluate(test)
                    metrics.testLoss = e.loss
                    metrics.testAccuracy = e.accuracy
                } catch let e as EvaluationInterrupted {
                    observer?.message("\(e); the epoch's training is kept")
                }
            }
            try saveCheckpoint()
            try appendMetrics(MetricsLine(metrics, ranks: dataParallel?.size))
            observer?.epochFinished(metrics)
            results.append(metrics)
            if stopRequested {
                observer?.message("stopped after epoch \(epoch)\(checkpointPath.map { "; checkpoint written to \($0) (resume with --resume \($0))" } ?? "")")
                return results
            }
        }
        return results
    }

    /// Loss, accuracy and confusion matrix of the model (eval mode: BatchNorm running statistics).
    /// Stops between batches on SIGINT (`EvaluationInterrupted`).
    public func evaluate(_ data: any LabelledImages, batchSize: Int? = nil) throws -> Evaluation {
        if let dp = dataParallel {
            return try dp.evaluate(data: data, backend: backend, batchSize: batchSize ?? max(options.batchSize, 256)) { [weak self] done, total in
                self?.observer?.evaluationProgress(done: done, total: total)
            }
        }
        return try Trainer.evaluate(model: model, backend: backend, data: data, batchSize: batchSize ?? max(options.batchSize, 256)) { [weak self] done, total in
            self?.observer?.evaluationProgress(done: done, total: total)
        }
    }
}

extension SGEResNet {
    /// One SGD step on a batch: forward (training mode), softmax cross-entropy, backward, update.
    /// Returns the batch's mean loss and correct count as 1-element device tensors (nothing is
    /// read back, so the caller decides when to synchronise).
    /// `beforeUpdate` runs between backward and the update (data parallelism averages the gradients there).
    public func trainStep(_ images: Tensor, labels: Tensor, optimizer: SGD, lr: Float,
                          beforeUpdate: (() throws -> Void)? = nil) throws -> (loss: Tensor, correct: Tensor) {
        let logits = try forward(images, training: true)
        let (loss, correct, grad) = try backend.softmaxCrossEntropy(logits, labels: labels)
        _ = try backward(grad)
        try beforeUpdate?()
        try optimizer.step(lr: lr)
        return (loss, correct)
    }
}
