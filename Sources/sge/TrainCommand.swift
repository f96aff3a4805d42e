import ArgumentParser
import Foundation
import SGEDistributed
import SGEEngine
import SGENet
import SGETensor

/// Dataset and model choices shared by train, eval and visualize.
struct DataOptions: ParsableArguments {
    @Option(help: "Dataset: fashion-mnist, mnist, cifar10, or imagefolder (--data DIR with train/ and val/, one folder per class, JPEG/PNG).")
    var dataset: String = "fashion-mnist"

    @Option(help: "Directory holding the dataset files (default: /usr/share/datasets/<dataset>).")
    var data: String?

    @Option(name: .customLong("image-size"), help: "imagefolder: training crop and evaluation size (default 224).")
    var imageSize = 224

    @Option(name: .customLong("loader-threads"), help: "imagefolder: decoding threads (default: cores - 1, at least 1).")
    var loaderThreads: Int?

    var isImageFolder: Bool { ["imagefolder", "image-folder"].contains(dataset.lowercased()) }

    /// The training (train/) or evaluation (val/) images: an in-memory dataset, or an image folder
    /// streamed from disk (val/ must have train/'s classes).
    func loadImages(train: Bool) throws -> any LabelledImages {
        guard isImageFolder else { return try load(train: train) }
        guard let data else { throw SGEError.invalidArgument("--dataset imagefolder needs --data DIR (with train/ and val/)") }
        let threads = loaderThreads ?? ImageFolder.defaultThreads
        let classes = try ImageFolder(dir: data, split: "train", imageSize: imageSize, threads: threads).classNames
        return try ImageFolder(dir: data, split: train ? "train" : "val", imageSize: imageSize, classes: classes, threads: threads)
    }

    func load(train: Bool) throws -> Dataset {
        switch dataset.lowercased() {
        case "imagefolder", "image-folder":
            throw SGEError.invalidArgument("--dataset imagefolder is streamed from disk; this command needs an in-memory dataset (fashion-mnist, mnist or cifar10)")
        case "fashion-mnist", "fashion_mnist", "fmnist": return try Dataset.fashionMNIST(dir: data ?? Dataset.fashionMNISTDirectory, train: train)
        case "mnist": return try Dataset.mnist(dir: data ?? Dataset.mnistDirectory, train: train)
        case "cifar10", "cifar-10": return try Dataset.cifar10(dir: data ?? Dataset.cifar10Directory, train: train)
        default: throw SGEError.invalidArgument("--dataset \(dataset): expected fashion-mnist, mnist or cifar10")
        }
    }
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train an SGE-ResNet with SGD, evaluating and checkpointing every epoch.",
        discussion: """
            Defaults train the small SGE-ResNet (stem 16, stages 16/32/64, one basic block each, SGE groups 4/8/8) on \
            Fashion-MNIST for 2 epochs: batch 128, SGD lr 0.1 momentum 0.9 weight decay 5e-4 (on every parameter, \
            as the paper's recipe), cosine schedule with 0.2 epochs of warm-up. Writes OUT/checkpoint.safetensors \
            (atomically, every epoch) and OUT/metrics.jsonl (one JSON object per epoch). Ctrl-C finishes the current \
            step (or evaluation batch), writes the checkpoint and exits 0; --resume OUT/checkpoint.safetensors continues \
            exactly there (the model, options and data must match; each difference is named). Without --out each run \
            gets a new folder runs/<name>, runs/<name>-2, ...; an --out that already holds a run is refused unless \
            --resume or --overwrite is given. The batch's memory need is checked against the device before training.
            """)

    @OptionGroup var device: DeviceOptions
    @OptionGroup var data: DataOptions

    @Option(help: "Model preset: small (28×28 inputs), resnet20 (32×32, CIFAR), or the ImageNet layouts resnet18, resnet34, resnet50, resnet101 (SGE G = 64).")
    var model: String?
    @Option(help: "Base width: stages w, 2w, 4w, 8w of the ImageNet presets (default 64); stem and stages w, 2w, 4w of small and resnet20 (default 16).") var width: Int?
    @Option(help: "Epochs.") var epochs = 2
    @Option(name: .customLong("batch-size"), help: "Batch size.") var batchSize = 128
    @Option(help: "Peak learning rate.") var lr: Float = 0.1
    @Option(help: "SGD momentum.") var momentum: Float = 0.9
    @Option(name: .customLong("weight-decay"), help: "Weight decay.") var weightDecay: Float = 5e-4
    @Flag(help: "Nesterov momentum.") var nesterov = false
    @Flag(name: .customLong("no-decay-norm"), help: "Exempt BatchNorm and SGE parameters from weight decay.") var noDecayNorm = false
    @Option(help: "Learning-rate schedule: cosine, step or constant.") var schedule = "cosine"
    @Option(help: "Warm-up length in epochs (linear from 0).") var warmup: Double = 0.2
    @Option(help: "Epochs at which the step schedule multiplies the rate by 0.1, e.g. 30,60.") var milestones: String?
    @Option(help: "Seed for initialisation, data order and augmentation.") var seed: UInt64 = 1
    @Flag(help: "Augment: random crop (padding 2 for 28×28, 4 for 32×32) and horizontal flip. On by default for CIFAR-10.") var augment = false
    @Flag(name: .customLong("no-augment"), help: "Disable augmentation (also for CIFAR-10).") var noAugment = false
    @Flag(name: .customLong("no-sge"), help: "Ablation baseline: no SGE layers.") var noSGE = false
    @Option(help: "SGE groups: one number for every stage or one per stage, e.g. 4,8,8.") var groups: String?
    @Flag(name: .customLong("sge-no-norm"), help: "Ablation: SGE without the mean/std normalisation step.") var sgeNoNorm = false
    @Option(name: .customLong("sge-init"), help: "SGE initial weight,bias (paper default 0,1).") var sgeInit = "0,1"
    @Option(help: "Output directory for the checkpoint and metrics.") var out: String?
    @Option(help: "Start from these weights (an sge checkpoint, or a PyTorch state_dict as safetensors of --model): parameters and BatchNorm statistics; the training position and momentum start afresh.")
    var weights: String?
    @Option(help: "Continue from this checkpoint (same model, options, data and --seed).") var resume: String?
    @Flag(help: "Allow --out to name a folder that holds another run: its checkpoint and metrics are replaced.") var overwrite = false
    @Option(name: .customLong("steps-per-epoch"), help: "Limit each epoch to this many steps (quick runs).") var stepsPerEpoch: Int?
    @Option(name: .customLong("train-subset"), help: "Use only the first N training images.") var trainSubset: Int?
    @Option(name: .customLong("log-every"), help: "Also write a metrics line every N steps.") var logEvery = 0
    @Option(name: .customLong("test-subset"), help: "Evaluate on the first N test images only.") var testSubset: Int?
    @Flag(name: .customLong("sync-bn"), help: "Under mpirun: BatchNorm statistics over every rank's batch (SyncBatchNorm).") var syncBN = false
    @Option(name: .customLong("bucket-kib"), help: "Under mpirun: gradient all-reduce bucket size in KiB.") var bucketKiB = 512

    func run() throws {
        try runDistributed { comm in try runCLI {
            // Everything that can be checked without data or a device is checked first.
            let sgeInitValues = try parseSGEInit()
            if let n = trainSubset, n <= 0 { throw SGEError.invalidArgument("--train-subset \(n): must be at least 1") }
            if let n = testSubset, n <= 0 { throw SGEError.invalidArgument("--test-subset \(n): must be at least 1") }
            guard bucketKiB > 0 else { throw SGEError.invalidArgument("--bucket-kib \(bucketKiB): must be at least 1") }
            var options = TrainOptions()
            options.epochs = epochs
            options.batchSize = batchSize
            options.lr = lr
            options.momentum = momentum
            options.weightDecay = weightDecay
            options.nesterov = nesterov
            options.noDecayNormAndGate = noDecayNorm
            guard let kind = LRSchedule.Kind(rawValue: schedule) else {
                throw SGEError.invalidArgument("--schedule \(schedule): expected cosine, step or constant")
            }
            options.schedule = kind
            options.warmupEpochs = warmup
            options.milestones = try milestones.map { try parseInts($0, "--milestones") } ?? []
            options.seed = seed
            options.stepsPerEpochLimit = stepsPerEpoch
            options.logEvery = logEvery
            try options.validate()
            if let resume, !FileManager.default.fileExists(atPath: resume) {
                throw SGEError.io(path: resume, reason: "--resume: no such checkpoint")
            }
            if comm.isDistributed, let threads = Distributed.sharePoCLThreads(localSize: comm.localSize), comm.rank == 0 {
                log("\(comm.localSize) ranks share this machine: POCL_MAX_PTHREAD_COUNT=\(threads) each (set it to override)")
            }
            let choice = try device.choose(localRank: comm.localRank, rank: comm.isDistributed ? comm.rank : nil)
            var train = try data.loadImages(train: true)
            if let n = trainSubset { train = train.slice(0..<n) }
            var test = try data.loadImages(train: false)
            if let n = testSubset { test = test.slice(0..<n) }
            guard batchSize <= train.count else {
                throw SGEError.invalidArgument("--batch-size \(batchSize) is larger than the \(train.count) training images: "
                    + "an epoch would have no full batch; use --batch-size \(train.count) or less")
            }
            let config = try modelConfig(train: train, sgeInit: sgeInitValues)
            let wantAugment = !noAugment && (augment || data.dataset.lowercased().hasPrefix("cifar"))
            // Image folders: RandomResizedCrop + flip unless --no-augment (crop padding unused).
            let folderAugment = data.isImageFolder && !noAugment
            options.cropPadding = wantAugment && !data.isImageFolder ? (train.height >= 32 ? 4 : 2) : 0
            options.horizontalFlip = wantAugment || folderAugment
            // Memory: the training step, and the end-of-epoch evaluation's batch, before any allocation.
            try MemoryEstimate.check(config, batch: batchSize, channels: train.channels, height: train.height, width: train.width,
                                     backend: choice.backend)
            try MemoryEstimate.check(config, batch: max(batchSize, 256), channels: train.channels, height: train.height, width: train.width,
                                     backend: choice.backend, training: false)
            let net: SGEResNet
            if let weights {
                guard resume == nil else { throw SGEError.invalidArgument("--weights and --resume exclude each other: --resume restores the weights too") }
                let source = try Weights(path: weights, model: model)
                guard source.config.classes == config.classes, source.config.inputChannels == config.inputChannels else {
                    throw SGEError.invalidArgument("--weights \(weights) has \(source.config.classes) classes and \(source.config.inputChannels) input channels "
                        + "(fc.weight, conv1.weight); the data has \(config.classes) and \(config.inputChannels)")
                }
                net = try source.model(on: choice.backend)
                for (_, p) in net.namedParameters { p.momentum = nil }
                log("starting from the weights in \(weights) (\(source.config.describe))")
            } else {
                net = try SGEResNet(choice.backend, config: config, seed: seed)
            }
            let trainer = try Trainer(backend: choice.backend, model: net, train: train, test: test, options: options)
            let dp = DataParallel(communicator: comm, model: net, syncBatchNorm: syncBN, bucketBytes: bucketKiB * 1024)
            if syncBN && !comm.isDistributed { log("--sync-bn has no effect with one process (start several with mpirun -np N)") }
            if comm.isDistributed {
                try dp.checkSameConfiguration(try configurationDescription(options, config, train: train, test: test))
                try trainer.attach(dp)
            }
            if let resume {
                try DataParallel.checkWorldSize(checkpoint: resume, size: comm.size)
                try trainer.resume(from: resume)
                log("resumed from \(resume) at epoch \(trainer.epoch + 1), step \(trainer.step)")
            }
            try dp.broadcastState(optimizer: trainer.optimizer)
            // The run folder last: refused if it holds another run, checked for writability. Rank 0 only writes.
            let outDir = comm.rank != 0 ? "" : try RunFolder.prepare(out: out, base: "runs/\(data.dataset)-\(model ?? "default")\(noSGE ? "-nosge" : "")",
                                                                      resume: resume, overwrite: overwrite)
            if comm.rank == 0 {
                trainer.checkpointPath = (outDir as NSString).appendingPathComponent(RunFolder.checkpointName)
                trainer.metricsPath = (outDir as NSString).appendingPathComponent(RunFolder.metricsName)
            }
            warnIfReference(choice.backend, work: "each epoch")
            let parameterCount = net.namedParameters.reduce(0) { $0 + $1.1.value.count }
            log("model: \(config.useSGE ? "SGE-" : "")ResNet \(config.block.rawValue) widths \(config.widths) blocks \(config.blocks)"
                + (config.useSGE ? " SGE groups \(config.groups)\(config.sgeNormalize ? "" : " (no norm)")" : "")
                + ", \(parameterCount) parameters")
            log("data: \(train.source): \(train.count) train / \(test.count) test images, \(train.channels)×\(train.height)×\(train.width)"
                + (folderAugment ? ", augmentation RandomResizedCrop + flip, \((train as? ImageFolder)?.threads ?? 1) loader threads"
                    : wantAugment ? ", augmentation crop±\(options.cropPadding) + flip" : ""))
            log("training \(epochs) epochs × \(trainer.stepsPerEpoch) steps of \(batchSize)"
                + (comm.isDistributed ? " per rank × \(comm.size) ranks (gradients in \(dp.bucketCount) bucket(s), \(formatBytes(UInt64(dp.bytesPerStep))) per step\(syncBN ? ", synchronised BatchNorm" : ""))" : "")
                + "; writing \(outDir)/")
            let progress = ProgressPrinter(epochs: epochs)
            if comm.rank == 0 { trainer.observer = progress }
            installStopHandler()
            let start = Date()
            let results = try trainer.run()
            progress.finish()
            if LayerProfiler.enabled { log("time per layer kind (SGE_PROFILE=1, synchronised after every call):\n" + LayerProfiler.report()) }
            try printParameterHashIfAsked(net, rank: comm.rank)
            if trainingStopRequested != 0 || trainer.dataParallel?.stopAgreed == true { return }  // stopped by Ctrl-C: the trainer said where the checkpoint is
            if let last = results.last {
                let total = Date().timeIntervalSince(start)
                let accuracy = last.testAccuracy.map { String(format: "test accuracy %.2f%%, ", 100 * $0) } ?? ""
                log(String(format: "done in %.0f s: %@%.0f images/s (last epoch)", total, accuracy, last.imagesPerSecond))
                if comm.isDistributed { log(dataParallelSummary(dp, last: last)) }
            }
        } }
    }

    /// What every rank must agree on: options, model, data and the data-parallel choices.
    func configurationDescription(_ options: TrainOptions, _ config: ResNetConfig, train: any LabelledImages, test: any LabelledImages) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let o = String(decoding: try encoder.encode(options), as: UTF8.self)
        let c = String(decoding: try encoder.encode(config), as: UTF8.self)
        return [o, c, train.source, String(train.count), test.source, String(test.count), String(syncBN), String(bucketKiB),
                resume ?? "", String(epochs)].joined(separator: "|")
    }

    /// `--sge-init` as two finite numbers.
    func parseSGEInit() throws -> (Float, Float) {
        let parts = sgeInit.split(separator: ",", omittingEmptySubsequences: false).map { Float($0.trimmingCharacters(in: .whitespaces)) }
        guard parts.count == 2, let w = parts[0], let b = parts[1] else {
            throw SGEError.invalidArgument("--sge-init \(sgeInit): expected weight,bias such as 0,1")
        }
        guard w.isFinite, b.isFinite else { throw SGEError.invalidArgument("--sge-init \(sgeInit): weight and bias must be finite numbers") }
        return (w, b)
    }

    func modelConfig(train: any LabelledImages, sgeInit initValues: (Float, Float)) throws -> ResNetConfig {
        var config = try ResNetConfig.preset(model, channels: train.channels, height: train.height, classes: train.classes, width: width)
        config.useSGE = !noSGE
        config.sgeNormalize = !sgeNoNorm
        if let groups {
            let g = try parseInts(groups, "--groups")
            config.groups = g.count == 1 ? [Int](repeating: g[0], count: config.widths.count) : g
        }
        config.sgeInitWeight = initValues.0
        config.sgeInitBias = initValues.1
        return config
    }
}

func parseInts(_ text: String, _ option: String) throws -> [Int] {
    let parts = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard !parts.isEmpty, parts.allSatisfy({ $0 != nil }) else {
        throw SGEError.invalidArgument("\(option) \(text): expected comma-separated integers")
    }
    return parts.map { $0! }
}

func log(_ text: String) {
    if logMuted { return }
    FileHandle.standardError.write(Data("sge: \(text)\n".utf8))
}

/// Live progress on a terminal (one rewritten line), plain periodic lines otherwise.
final class ProgressPrinter: TrainingObserver {
    let epochs: Int
    let isTTY = isatty(STDERR_FILENO) != 0
    var lastPlain = Date.distantPast
    var epochStart = Date()
    var currentEpoch = -1

    init(epochs: Int) { self.epochs = epochs }

    func stepFinished(epoch: Int, step: Int, stepInEpoch: Int, stepsInEpoch: Int, loss: Double, accuracy: Double, imagesPerSecond: Double, lr: Float) {
        if epoch != currentEpoch { currentEpoch = epoch; epochStart = Date() }
        let remainingSteps = Double(stepsInEpoch - stepInEpoch) + Double((epochs - epoch - 1) * stepsInEpoch)
        let secondsPerStep = Date().timeIntervalSince(epochStart) / Double(max(stepInEpoch, 1))
        let eta = formatDuration(remainingSteps * secondsPerStep)
        let line = String(format: "epoch %d/%d  step %d/%d  loss %.4f  acc %.2f%%  %.0f img/s  lr %.4f  ETA %@",
                          epoch + 1, epochs, stepInEpoch, stepsInEpoch, loss, 100 * accuracy, imagesPerSecond, lr, eta)
        if isTTY {
            FileHandle.standardError.write(Data("\r\u{1B}[2K\(line)".utf8))
        } else if Date().timeIntervalSince(lastPlain) >= 15 || stepInEpoch == stepsInEpoch {
            lastPlain = Date()
            FileHandle.standardError.write(Data("\(line)\n".utf8))
        }
    }

    func epochFinished(_ m: EpochMetrics) {
        if let e = evaluation { e.finish(); evaluation = nil } else if isTTY { FileHandle.standardError.write(Data("\n".utf8)) }
        var text = String(format: "epoch %d: train loss %.4f acc %.2f%%", m.epoch, m.trainLoss, 100 * m.trainAccuracy)
        if let l = m.testLoss, let a = m.testAccuracy { text += String(format: " | test loss %.4f acc %.2f%%", l, 100 * a) }
        text += String(format: " | %.0f img/s, %.0f s (waiting for data %.1f s, host enqueue %.1f s, waiting for device %.1f s)",
                       m.imagesPerSecond, m.seconds, m.dataWaitSeconds, m.hostSeconds, m.deviceWaitSeconds)
        if m.allReduceBytesPerStep > 0 {
            text += String(format: "; all-reduce %@ per step, %.2f s not hidden behind backward", formatBytes(UInt64(m.allReduceBytesPerStep)) as NSString,
                           m.allReduceWaitSeconds)
        }
        log(text)
    }

    func message(_ text: String) {
        evaluation?.finish()
        if isTTY { FileHandle.standardError.write(Data("\n".utf8)) }
        log(text)
    }

    var evaluation: EvaluationProgress?

    func evaluationProgress(done: Int, total: Int) {
        if evaluation == nil {
            if isTTY { FileHandle.standardError.write(Data("\n".utf8)) }
            evaluation = EvaluationProgress()
        }
        evaluation!.update(done: done, total: total)
        if done >= total { evaluation!.finish(); evaluation = nil }
    }

    func finish() {}
}

func formatDuration(_ s: Double) -> String {
    guard s.isFinite else { return "?" }
    let t = Int(s.rounded())
    return t >= 3600 ? String(format: "%dh%02dm", t / 3600, (t % 3600) / 60) : String(format: "%dm%02ds", t / 60, t % 60)
}
