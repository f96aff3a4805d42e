import ArgumentParser
import Foundation
import SGEEngine
import SGENet
import SGEViz
import SGETensor

struct StudyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "study",
        abstract: "Ablation grid of short trainings: SGE vs no SGE, groups G, with/without normalisation, over seeds.",
        discussion: """
            Grid (default): no SGE; SGE with G = 1, 2, 4, 8, 16 in every stage (the small model's first stage has 16 \
            channels, so G ≤ 16), with normalisation; the same G without normalisation — 11 variants × 3 seeds = 33 runs, \
            each 1 epoch on the whole training set (--train-subset N: the first N images; batch 128, SGD lr 0.1, \
            cosine schedule; --augment: random crop and flips as `sge train --augment`), tested on the whole test set. Runs go seed by seed through the library Trainer. Each finished run appends a line to \
            OUT/study.jsonl; runs already there are skipped, so rerunning continues an interrupted study (Ctrl-C or \
            --budget). At the end OUT/study.md (mean ± std test accuracy, images/s per variant) and OUT/study.png \
            (bar chart with error bars) are written from every finished run of the grid.
            """)

    @OptionGroup var device: DeviceOptions
    @OptionGroup var data: DataOptions
    @Option(help: "Output directory.") var out = "runs/study"
    @Option(help: "Epochs per run.") var epochs = 1
    @Option(name: .customLong("train-subset"), help: "Train on the first N training images (default: all).") var trainSubset: Int?
    @Option(name: .customLong("test-subset"), help: "Test on the first N test images (0: all).") var testSubset = 0
    @Option(help: "Number of seeds (1...S).") var seeds = 3
    @Option(name: .customLong("seed-list"), help: "The seeds themselves, e.g. 2 or 4,5 (replaces --seeds): several studies of one grid with other seeds can run at once, each in its own --out, and their study.jsonl lines be joined.")
    var seedList: String?
    @Option(help: "SGE group counts (with normalisation), e.g. 1,2,4,8,16.") var groups = "1,2,4,8,16"
    @Option(name: .customLong("no-norm-groups"), help: "Group counts for the no-normalisation variants ('none' for none).") var noNormGroups = "1,2,4,8,16"
    @Flag(name: .customLong("no-baseline"), help: "Leave out the no-SGE baseline.") var noBaseline = false
    @Option(name: .customLong("batch-size"), help: "Batch size.") var batchSize = 128
    @Flag(help: "Augment: random crop (padding 2 for 28×28, 4 for 32×32) and horizontal flip.") var augment = false
    @Option(help: "Peak learning rate.") var lr: Float = 0.1
    @Option(help: "Model preset: small (28×28) or resnet20 (32×32). Default by image size.") var model: String?
    @Option(help: "Time budget, e.g. 900, 90s, 30m, 2h: no new run starts once the next would exceed it; rerun to continue.")
    var budget: String?

    func run() throws {
        try runCLI {
            guard seeds > 0 else { throw SGEError.invalidArgument("--seeds \(seeds): must be positive") }
            let budgetSeconds = try budget.map(parseDuration)
            let seedValues: [UInt64]
            if let list = seedList {
                let values = try parseInts(list, "--seed-list")
                guard !values.isEmpty, values.allSatisfy({ $0 >= 0 }), Set(values).count == values.count else {
                    throw SGEError.invalidArgument("--seed-list \(list): give distinct seeds >= 0, e.g. 1,2,3")
                }
                seedValues = values.map(UInt64.init)
            } else {
                seedValues = (1...seeds).map(UInt64.init)
            }
            let choice = try device.choose()
            let train = try data.load(train: true)
            let test = try data.load(train: false)
            let base = try ResNetConfig.preset(model, channels: train.channels, height: train.height, classes: train.classes)
            var settings = StudySettings()
            settings.epochs = epochs
            settings.batchSize = batchSize
            settings.lr = lr
            if let n = trainSubset, n <= 0 { throw SGEError.invalidArgument("--train-subset \(n): must be at least 1 (leave it out for all)") }
            settings.trainSubset = trainSubset
            settings.augment = augment
            settings.testSubset = testSubset > 0 ? testSubset : nil
            let g = try parseInts(groups, "--groups")
            let nn = noNormGroups.lowercased() == "none" ? [] : try parseInts(noNormGroups, "--no-norm-groups")
            var variants = StudyVariant.grid(groups: g, noNormGroups: nn)
            if noBaseline { variants.removeFirst() }
            let deviceName = choice.info.map(\.name) ?? "reference"
            let study = try Study(outDir: out, backend: choice.backend, deviceName: deviceName, baseConfig: base, train: train, test: test,
                                  settings: settings, variants: variants, seeds: seedValues)
            study.budgetSeconds = budgetSeconds
            study.progress = { log($0) }
            signal(SIGINT) { _ in
                if trainingStopRequested != 0 { _exit(130) }
                trainingStopRequested = 1
            }
            let start = Date()
            let ran = try study.run()
            log(String(format: "trained %d runs in %.0f s", ran, Date().timeIntervalSince(start)))
            print(try String(contentsOfFile: study.markdownPath, encoding: .utf8))
            print("wrote \(study.jsonlPath), \(study.markdownPath)" + (FileManager.default.fileExists(atPath: study.pngPath) ? ", \(study.pngPath)" : ""))
        }
    }
}

/// Seconds from "900", "90s", "30m" or "2h".
func parseDuration(_ text: String) throws -> Double {
    let t = text.trimmingCharacters(in: .whitespaces).lowercased()
    let units: [(String, Double)] = [("h", 3600), ("m", 60), ("s", 1)]
    for (suffix, factor) in units where t.hasSuffix(suffix) {
        if let v = Double(t.dropLast()), v > 0 { return v * factor }
    }
    if let v = Double(t), v > 0 { return v }
    throw SGEError.invalidArgument("--budget \(text): expected seconds or a duration such as 90s, 30m, 2h")
}
