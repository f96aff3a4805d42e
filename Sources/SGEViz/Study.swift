// An ablation study: a grid of short trainings (variant × seed) through the library Trainer.
//
// Variants: no SGE; SGE with G groups in every stage, with and without the normalisation step.
// Each finished run appends one JSON line to OUT/study.jsonl (its key, the variant, the seed, the
// settings, test accuracy and loss, training images/s, wall seconds). A run whose key is already
// in the file is skipped, so an interrupted or budget-limited study continues where it stopped.
// The key holds every setting that changes the result (variant, seed, epochs, subset sizes, batch,
// learning rate, dataset), so a changed setting gives new runs rather than mixing old ones in.
//
// Summary per variant over its n runs (seeds): mean test accuracy ā = (1/n) Σ a_r and the sample
// standard deviation sqrt( Σ (a_r - ā)² / (n - 1) ) (0 when n = 1); mean training images/s.
// OUT/study.md is the table, OUT/study.png a bar chart of ā with ±std error bars and each run as
// a dot.
import Foundation
import SGENet
import SGEEngine
import SGETensor

/// One cell of the study grid's model axis.
public struct StudyVariant: Codable, Sendable, Hashable {
    public var useSGE: Bool
    public var groups: Int
    public var normalize: Bool
    public init(useSGE: Bool, groups: Int = 0, normalize: Bool = true) {
        self.useSGE = useSGE
        self.groups = useSGE ? groups : 0
        self.normalize = useSGE ? normalize : true
    }
    public static let noSGE = StudyVariant(useSGE: false)
    public static func sge(groups: Int, normalize: Bool = true) -> StudyVariant { StudyVariant(useSGE: true, groups: groups, normalize: normalize) }

    /// Display name, e.g. "SGE G=8", "SGE G=8 no-norm", "no SGE".
    public var name: String { useSGE ? "SGE G=\(groups)\(normalize ? "" : " no-norm")" : "no SGE" }
    /// Key used in study.jsonl, e.g. "sge-g8", "sge-g8-nonorm", "nosge".
    public var key: String { useSGE ? "sge-g\(groups)\(normalize ? "" : "-nonorm")" : "nosge" }

    /// `base` with this variant's SGE settings (the same G in every stage).
    public func apply(to base: ResNetConfig) -> ResNetConfig {
        var c = base
        c.useSGE = useSGE
        if useSGE {
            c.groups = [Int](repeating: groups, count: c.widths.count)
            c.sgeNormalize = normalize
        }
        return c
    }

    /// The default grid: no SGE, then SGE at each G with normalisation, then each G in
    /// `noNormGroups` without.
    public static func grid(groups: [Int], noNormGroups: [Int]) -> [StudyVariant] {
        [.noSGE] + groups.map { .sge(groups: $0) } + noNormGroups.map { .sge(groups: $0, normalize: false) }
    }
}

/// The training settings shared by every run of a study.
public struct StudySettings: Codable, Sendable, Equatable {
    public var epochs = 1
    public var batchSize = 128
    public var lr: Float = 0.1
    /// Train on the first N training images (nil: all).
    public var trainSubset: Int?
    /// Augment as `sge train --augment`: random crop (padding 2 below 32×32, else 4) and flips.
    public var augment = false
    /// Evaluate on the first N test images (nil: all).
    public var testSubset: Int?
    public init() {}
}

/// One finished run: a line of study.jsonl.
public struct StudyRun: Codable, Sendable, Equatable {
    public var key: String
    public var variant: String
    public var useSGE: Bool
    public var groups: Int
    public var normalize: Bool
    public var seed: UInt64
    public var epochs: Int
    public var batchSize: Int
    public var lr: Float
    public var trainImages: Int
    public var testImages: Int
    public var dataset: String
    public var testAccuracy: Double
    public var testLoss: Double
    public var trainLoss: Double
    public var imagesPerSecond: Double
    public var seconds: Double
    public var device: String
    enum CodingKeys: String, CodingKey {
        case key, variant, seed, epochs, lr, dataset, device, seconds, groups, normalize
        case useSGE = "use_sge", batchSize = "batch_size", trainImages = "train_images", testImages = "test_images"
        case testAccuracy = "test_acc", testLoss = "test_loss", trainLoss = "train_loss", imagesPerSecond = "images_per_s"
    }

    public var studyVariant: StudyVariant { StudyVariant(useSGE: useSGE, groups: groups, normalize: normalize) }
}

/// Mean ± std of one variant's runs.
public struct StudySummary: Sendable, Equatable {
    public var variant: StudyVariant
    public var runs: Int
    public var accuracies: [Double]
    public var meanAccuracy: Double
    /// Sample standard deviation over runs (0 for one run).
    public var stdAccuracy: Double
    public var meanTestLoss: Double
    public var meanImagesPerSecond: Double
}

/// Runs, records and reports a study grid.
public final class Study {
    public let outDir: String
    public let backend: any Backend
    public let deviceName: String
    public let baseConfig: ResNetConfig
    public let train: Dataset
    public let test: Dataset
    public let settings: StudySettings
    public let variants: [StudyVariant]
    public let seeds: [UInt64]
    /// Stop starting new runs once this many seconds have passed (nil: no limit).
    public var budgetSeconds: Double?
    /// Progress lines ("run 3/18: ...", ETA).
    public var progress: ((String) -> Void)?

    public var jsonlPath: String { (outDir as NSString).appendingPathComponent("study.jsonl") }
    public var markdownPath: String { (outDir as NSString).appendingPathComponent("study.md") }
    public var pngPath: String { (outDir as NSString).appendingPathComponent("study.png") }

    public init(outDir: String, backend: any Backend, deviceName: String, baseConfig: ResNetConfig, train: Dataset, test: Dataset,
                settings: StudySettings, variants: [StudyVariant], seeds: [UInt64]) throws {
        guard !variants.isEmpty, !seeds.isEmpty else { throw SGEError.invalidArgument("study: the grid is empty (no variants or no seeds)") }
        guard Set(seeds).count == seeds.count, Set(variants).count == variants.count else {
            throw SGEError.invalidArgument("study: seeds \(seeds) and variants \(variants.map(\.name)) must not repeat")
        }
        guard settings.epochs > 0, settings.batchSize > 0, settings.lr > 0 else {
            throw SGEError.invalidArgument("study: epochs, batch size and learning rate must be positive")
        }
        for v in variants { try v.apply(to: baseConfig).validate() }
        self.outDir = outDir
        self.backend = backend
        self.deviceName = deviceName
        self.baseConfig = baseConfig
        self.train = settings.trainSubset.map { train.prefix($0) } ?? train
        self.test = settings.testSubset.map { test.prefix($0) } ?? test
        guard self.train.count >= settings.batchSize else {
            throw SGEError.invalidArgument("study: \(self.train.count) training images is fewer than one batch of \(settings.batchSize)")
        }
        guard self.test.count > 0 else { throw SGEError.invalidArgument("study: no test images") }
        self.settings = settings
        self.variants = variants
        self.seeds = seeds
    }

    /// The grid in run order: seed-major, so a partial study covers every variant evenly.
    public var plannedRuns: [(variant: StudyVariant, seed: UInt64)] { seeds.flatMap { s in variants.map { ($0, s) } } }

    /// The study.jsonl key of one run.
    public func key(_ variant: StudyVariant, seed: UInt64) -> String {
        "\(variant.key) seed=\(seed) epochs=\(settings.epochs) train=\(train.count) test=\(test.count) batch=\(settings.batchSize) "
            + "lr=\(settings.lr) data=\(train.source)" + (settings.augment ? " augment" : "")
    }

    /// Runs already in study.jsonl (any grid); unreadable lines (a run cut off mid-write) are skipped.
    public func recordedRuns() throws -> [StudyRun] {
        guard FileManager.default.fileExists(atPath: jsonlPath) else { return [] }
        guard let data = FileManager.default.contents(atPath: jsonlPath) else { throw SGEError.io(path: jsonlPath, reason: "cannot read") }
        var runs: [StudyRun] = []
        for (i, line) in data.split(separator: 0x0A).enumerated() where !line.allSatisfy({ $0 == 0x20 || $0 == 0x0D }) {
            if let r = try? JSONDecoder().decode(StudyRun.self, from: Data(line)) { runs.append(r) } else {
                progress?("study: skipping unreadable line \(i + 1) of \(jsonlPath)")
            }
        }
        return runs
    }

    /// The recorded runs that belong to this grid, in grid order.
    public func gridRuns() throws -> [StudyRun] {
        let byKey = Dictionary(try recordedRuns().map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first })
        return plannedRuns.compactMap { byKey[key($0.variant, seed: $0.seed)] }
    }

    /// Trains every run not yet recorded (until the budget is spent), then writes study.md and
    /// study.png from all of this grid's recorded runs. Returns how many runs were trained now.
    @discardableResult
    public func run() throws -> Int {
        try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
        let done = Set(try recordedRuns().map(\.key))
        let pending = plannedRuns.filter { !done.contains(key($0.variant, seed: $0.seed)) }
        let total = plannedRuns.count
        progress?("study: \(total) runs (\(variants.count) variants × \(seeds.count) seeds), \(total - pending.count) already in \(jsonlPath), \(pending.count) to train")
        let start = Date()
        var ran = 0
        for (i, item) in pending.enumerated() {
            let elapsed = Date().timeIntervalSince(start)
            if let budget = budgetSeconds, ran > 0, elapsed + elapsed / Double(ran) > budget {
                progress?(String(format: "study: stopping: budget %.0f s would be exceeded by the next run (%.0f s spent, ~%.0f s per run); %d runs left, rerun to continue",
                                 budget, elapsed, elapsed / Double(ran), pending.count - i))
                break
            }
            if trainingStopRequested != 0 { break }
            progress?("study: run \(total - pending.count + i + 1)/\(total): \(item.variant.name), seed \(item.seed)"
                      + (ran > 0 ? ", ETA \(Study.duration(elapsed / Double(ran) * Double(pending.count - i)))" : ""))
            guard let record = try train(item.variant, seed: item.seed) else { break }
            try append(record)
            progress?(String(format: "study:   test accuracy %.2f%%, loss %.4f, %.0f images/s, %.0f s", 100 * record.testAccuracy,
                             record.testLoss, record.imagesPerSecond, record.seconds))
            ran += 1
        }
        try writeReports()
        return ran
    }

    /// Trains one run; nil when interrupted (SIGINT).
    func train(_ variant: StudyVariant, seed: UInt64) throws -> StudyRun? {
        let t0 = Date()
        let model = try SGEResNet(backend, config: variant.apply(to: baseConfig), seed: seed)
        var options = TrainOptions()
        options.epochs = settings.epochs
        options.batchSize = settings.batchSize
        options.lr = settings.lr
        options.seed = seed
        if settings.augment {
            options.cropPadding = train.height >= 32 ? 4 : 2
            options.horizontalFlip = true
        }
        let trainer = try Trainer(backend: backend, model: model, train: train, test: test, options: options)
        let metrics = try trainer.run()
        guard metrics.count == settings.epochs, let last = metrics.last, let acc = last.testAccuracy, let loss = last.testLoss else { return nil }
        let trainSeconds = metrics.reduce(0) { $0 + $1.seconds }
        let images = Double(trainer.stepsPerEpoch * settings.batchSize * settings.epochs)
        return StudyRun(key: key(variant, seed: seed), variant: variant.name, useSGE: variant.useSGE, groups: variant.groups,
                        normalize: variant.normalize, seed: seed, epochs: settings.epochs, batchSize: settings.batchSize, lr: settings.lr,
                        trainImages: train.count, testImages: test.count, dataset: train.source, testAccuracy: acc, testLoss: loss,
                        trainLoss: last.trainLoss, imagesPerSecond: images / max(trainSeconds, 1e-9),
                        seconds: Date().timeIntervalSince(t0), device: deviceName)
    }

    func append(_ run: StudyRun) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var line = try encoder.encode(run)
        line.append(0x0A)
        if !FileManager.default.fileExists(atPath: jsonlPath) {
            guard FileManager.default.createFile(atPath: jsonlPath, contents: nil) else {
                throw SGEError.io(path: jsonlPath, reason: "cannot create the study file")
            }
        }
        guard let handle = FileHandle(forWritingAtPath: jsonlPath) else { throw SGEError.io(path: jsonlPath, reason: "cannot open for appending") }
        defer { try? handle.close() }
        handle.seekToEndOfFile()
        handle.write(line)
    }

    /// Writes study.md and study.png from this grid's recorded runs.
    public func writeReports() throws {
        let summaries = Study.summarize(try gridRuns(), order: variants)
        let title = "SGE study: \(settings.epochs) epoch\(settings.epochs == 1 ? "" : "s") on \(train.count) training images"
            + (settings.augment ? " (augmented)" : "") + ", "
            + "test on \(test.count); batch \(settings.batchSize), lr \(settings.lr), seeds \(seeds.map(String.init).joined(separator: ","))"
        try Study.markdown(summaries, title: title, device: deviceName).write(toFile: markdownPath, atomically: true, encoding: .utf8)
        if !summaries.isEmpty { try Study.chart(summaries, title: title).writePNG(path: pngPath) }
    }

    /// Mean ± sample std of test accuracy (and means of loss and images/s) per variant, in `order`;
    /// variants without runs are left out.
    public static func summarize(_ runs: [StudyRun], order: [StudyVariant]) -> [StudySummary] {
        order.compactMap { v in
            let rs = runs.filter { $0.studyVariant == v }
            guard !rs.isEmpty else { return nil }
            let acc = rs.map(\.testAccuracy)
            let n = Double(rs.count)
            let mean = acc.reduce(0, +) / n
            let std = rs.count > 1 ? (acc.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1)).squareRoot() : 0
            return StudySummary(variant: v, runs: rs.count, accuracies: acc, meanAccuracy: mean, stdAccuracy: std,
                                meanTestLoss: rs.reduce(0) { $0 + $1.testLoss } / n,
                                meanImagesPerSecond: rs.reduce(0) { $0 + $1.imagesPerSecond } / n)
        }
    }

    /// The summary as a markdown table.
    public static func markdown(_ summaries: [StudySummary], title: String, device: String) -> String {
        var s = "# \(title)\n\nDevice: \(device). Accuracy: mean ± sample std over runs (seeds).\n\n"
        s += "| variant | runs | test accuracy (%) | test loss | images/s |\n|---|---:|---:|---:|---:|\n"
        for r in summaries {
            s += String(format: "| %@ | %d | %.2f ± %.2f | %.4f | %.0f |\n", r.variant.name, r.runs, 100 * r.meanAccuracy,
                        100 * r.stdAccuracy, r.meanTestLoss, r.meanImagesPerSecond)
        }
        if summaries.isEmpty { s += "| (no finished runs) | 0 | | | |\n" }
        return s
    }

    /// A bar chart of mean test accuracy per variant with ±std error bars and each run as a dot.
    public static func chart(_ summaries: [StudySummary], title: String, height: Int = 520) -> Canvas {
        let barWidth = 44, spacing = 22, left = 70, right = 20, top = 50
        let names = summaries.map { $0.variant.name + " (\($0.runs))" }
        let labelSpace = 8 + max(Canvas.textWidth("SGE G=16 NO-NORM (3)"), names.map { Canvas.textWidth($0) }.max() ?? 0)
        // The bitmap font has no ';' or '±'.
        let heading = title.replacingOccurrences(of: ";", with: ",")
        let subtitle = "test accuracy (%): bars mean, whiskers +/- sample std, dots single runs, the axis does not start at 0"
        let width = max(left + right + summaries.count * (barWidth + spacing), Canvas.textWidth(heading) + 20, Canvas.textWidth(subtitle) + 20)
        var c = Canvas(width: width, height: height)
        let bottom = height - labelSpace - 10
        c.text(heading, x: 10, y: 10, .black)
        c.text(subtitle, x: 10, y: 26, RGB(90, 90, 90))
        let values = summaries.flatMap { s in s.accuracies + [s.meanAccuracy - s.stdAccuracy, s.meanAccuracy + s.stdAccuracy] }.map { 100 * $0 }
        let (y0, y1) = MetricsPlot.padded(values.min() ?? 0, values.max() ?? 100, margin: 0.15)
        func py(_ v: Double) -> Int { bottom - Int(((v - y0) / (y1 - y0) * Double(bottom - top)).rounded()) }
        let (ticks, decimals) = MetricsPlot.ticks(y0, y1, target: 6)
        for t in ticks {
            c.line(left - 4, py(t), width - right, py(t), RGB(225, 225, 225))
            let label = MetricsPlot.format(t, decimals: decimals)
            c.text(label, x: left - 8 - Canvas.textWidth(label), y: py(t) - 3, .black)
        }
        c.line(left, top, left, bottom, .black)
        c.line(left, bottom, width - right, bottom, .black)
        for (i, s) in summaries.enumerated() {
            let x = left + spacing / 2 + i * (barWidth + spacing)
            let colour = !s.variant.useSGE ? RGB(150, 150, 150) : (s.variant.normalize ? RGB(31, 119, 180) : RGB(255, 127, 14))
            let yMean = py(100 * s.meanAccuracy)
            c.fillRect(x: x, y: yMean, width: barWidth, height: bottom - yMean, colour)
            let centre = x + barWidth / 2
            let (lo, hi) = (py(100 * (s.meanAccuracy - s.stdAccuracy)), py(100 * (s.meanAccuracy + s.stdAccuracy)))
            c.line(centre, lo, centre, hi, .black, thickness: 2)
            c.line(centre - 8, lo, centre + 8, lo, .black, thickness: 2)
            c.line(centre - 8, hi, centre + 8, hi, .black, thickness: 2)
            for (j, a) in s.accuracies.enumerated() {
                let dx = s.accuracies.count > 1 ? (j * 20 / (s.accuracies.count - 1)) - 10 : 0
                c.fillRect(x: centre + dx - 2, y: py(100 * a) - 2, width: 5, height: 5, RGB(214, 39, 40))
            }
            let mean = String(format: "%.2f", 100 * s.meanAccuracy)
            c.text(mean, x: centre - Canvas.textWidth(mean) / 2, y: max(top - 12, hi - 12), .black)
            c.verticalText(names[i], x: centre - 3, y: bottom + 8, .black)
        }
        return c
    }

    static func duration(_ s: Double) -> String {
        guard s.isFinite else { return "?" }
        let t = Int(s.rounded())
        return t >= 3600 ? String(format: "%dh%02dm", t / 3600, (t % 3600) / 60) : String(format: "%dm%02ds", t / 60, t % 60)
    }
}
