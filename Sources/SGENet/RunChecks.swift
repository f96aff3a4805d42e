import Foundation
import SGETensor

extension TrainOptions {
    /// Rejects options that would train nonsense (zero steps, NaN rates, negative warm-up) before
    /// anything is loaded or allocated; each message names the option.
    public func validate() throws {
        func bad(_ message: String) -> SGEError { .invalidArgument(message) }
        guard epochs > 0 else { throw bad("--epochs \(epochs): must be at least 1") }
        guard batchSize > 0 else { throw bad("--batch-size \(batchSize): must be at least 1") }
        guard lr.isFinite, lr > 0 else { throw bad("--lr \(lr): must be a finite number > 0") }
        guard momentum.isFinite, momentum >= 0, momentum < 1 else { throw bad("--momentum \(momentum): must be in [0, 1)") }
        guard weightDecay.isFinite, weightDecay >= 0 else { throw bad("--weight-decay \(weightDecay): must be a finite number >= 0") }
        guard warmupEpochs.isFinite, warmupEpochs >= 0 else { throw bad("--warmup \(warmupEpochs): must be a finite number of epochs >= 0") }
        if let s = stepsPerEpochLimit, s <= 0 { throw bad("--steps-per-epoch \(s): must be at least 1 (leave it out for whole epochs)") }
        guard logEvery >= 0 else { throw bad("--log-every \(logEvery): must be >= 0 (0: epoch lines only)") }
        guard cropPadding >= 0 else { throw bad("crop padding \(cropPadding): must be >= 0") }
        for m in milestones where m <= 0 { throw bad("--milestones: \(m) is not a positive epoch") }
    }

    /// The options a resumed run must share with the checkpoint's run to continue it exactly, as
    /// (command-line option, value) pairs. `epochs` and `logEvery` may change (train longer, log more).
    var resumeSignature: [(String, String)] {
        [("--seed", "\(seed)"), ("--batch-size", "\(batchSize)"), ("--lr", "\(lr)"), ("--momentum", "\(momentum)"),
         ("--weight-decay", "\(weightDecay)"), ("--nesterov", "\(nesterov)"), ("--no-decay-norm", "\(noDecayNormAndGate)"),
         ("--schedule", schedule.rawValue), ("--warmup", "\(warmupEpochs)"), ("--milestones", milestones.map(String.init).joined(separator: ",")),
         ("augmentation crop padding (--augment/--no-augment)", "\(cropPadding)"), ("horizontal flip (--augment/--no-augment)", "\(horizontalFlip)"),
         ("--steps-per-epoch", stepsPerEpochLimit.map(String.init) ?? "all")]
    }
}

extension ResNetConfig {
    /// The fields in which `other` differs from `self`, as "field: self vs other" (initial SGE
    /// values are left out: loaded weights replace them).
    public func differences(from other: ResNetConfig) -> [String] {
        var d: [String] = []
        func cmp<T: Equatable>(_ name: String, _ a: T, _ b: T) { if a != b { d.append("\(name) \(a) vs \(b)") } }
        cmp("input channels", inputChannels, other.inputChannels)
        cmp("classes", classes, other.classes)
        cmp("stem", stem.rawValue, other.stem.rawValue)
        cmp("stem width", stemWidth, other.stemWidth)
        cmp("stage widths", widths, other.widths)
        cmp("blocks per stage (--model)", blocks, other.blocks)
        cmp("block kind", block.rawValue, other.block.rawValue)
        cmp("SGE layers (--no-sge)", useSGE, other.useSGE)
        if useSGE && other.useSGE {
            cmp("SGE groups (--groups)", groups, other.groups)
            cmp("SGE normalisation (--sge-no-norm)", sgeNormalize, other.sgeNormalize)
        }
        return d
    }
}

/// What `--resume` compares before it loads anything.
public enum ResumeCheck {
    /// Throws unless the checkpoint in `file` was written by a run of the same model, options and
    /// data; the error lists every difference as "what: checkpoint vs this run".
    public static func verify(file: SafeTensors, path: String, config: ResNetConfig, options: TrainOptions, train: any LabelledImages) throws {
        let stored = try Checkpoint.config(of: file, path: path)
        var differences = stored.differences(from: config).map { "model \($0)" }
        if let text = file.metadata["train_options"], let old = try? JSONDecoder().decode(TrainOptions.self, from: Data(text.utf8)) {
            for ((flag, a), (_, b)) in zip(old.resumeSignature, options.resumeSignature) where a != b {
                differences.append("\(flag) \(a) vs \(b)")
            }
        } else if let seed = file.metadata["rng_seed"].flatMap(UInt64.init), seed != options.seed {
            differences.append("--seed \(seed) vs \(options.seed)")
        }
        if let source = file.metadata["dataset"], source != train.source {
            differences.append("dataset \(source) vs \(train.source)")
        }
        if let count = file.metadata["train_count"], count != String(train.count) {
            differences.append("training images (--train-subset) \(count) vs \(train.count)")
        }
        guard differences.isEmpty else {
            throw SGEError.invalidArgument("resume: \(path) was written by a different run; it cannot be continued exactly. "
                + "Checkpoint vs this run: " + differences.joined(separator: "; ")
                + ". Pass the checkpoint's values, or start a new run (another --out)")
        }
    }
}

/// Run folders: where `sge train` writes its checkpoint and metrics, never over another run's.
public enum RunFolder {
    public static let checkpointName = "checkpoint.safetensors"
    public static let metricsName = "metrics.jsonl"

    /// Whether `dir` already holds a run (a checkpoint or a metrics file).
    public static func holdsRun(_ dir: String) -> Bool {
        let fm = FileManager.default
        return fm.fileExists(atPath: (dir as NSString).appendingPathComponent(checkpointName))
            || fm.fileExists(atPath: (dir as NSString).appendingPathComponent(metricsName))
    }

    /// `base` if it holds no run, else the first of `base-2`, `base-3`, ... that holds none.
    public static func fresh(base: String) -> String {
        if !holdsRun(base) { return base }
        var i = 2
        while holdsRun("\(base)-\(i)") { i += 1 }
        return "\(base)-\(i)"
    }

    /// Decides the run folder and checks it before any training: an explicit `--out` that holds a
    /// run is refused unless `overwrite` (its metrics file is then removed) or it holds the
    /// checkpoint being resumed. Without `--out`: the resumed checkpoint's folder, else a fresh
    /// `base`. The folder is created and checked for writability. Returns the folder.
    public static func prepare(out: String?, base: String, resume: String?, overwrite: Bool) throws -> String {
        let dir: String
        if let out {
            dir = out
        } else if let resume {
            dir = (resume as NSString).deletingLastPathComponent.isEmpty ? "." : (resume as NSString).deletingLastPathComponent
        } else {
            dir = fresh(base: base)
        }
        let checkpoint = (dir as NSString).appendingPathComponent(checkpointName)
        let resumesHere = resume.map { samePath($0, checkpoint) } ?? false
        if holdsRun(dir) && !resumesHere && !overwrite {
            let what = FileManager.default.fileExists(atPath: checkpoint) ? checkpoint : (dir as NSString).appendingPathComponent(metricsName)
            throw SGEError.invalidArgument("--out \(dir) already holds a run (\(what)); refusing to overwrite it. "
                + "Continue it with --resume \(checkpoint), replace it with --overwrite, or choose another --out")
        }
        try checkWritable(dir)
        if overwrite && !resumesHere {
            let metrics = (dir as NSString).appendingPathComponent(metricsName)
            if FileManager.default.fileExists(atPath: metrics) {
                do { try FileManager.default.removeItem(atPath: metrics) } catch {
                    throw SGEError.io(path: metrics, reason: "--overwrite: cannot remove the old metrics file: \(error.localizedDescription)")
                }
            }
        }
        return dir
    }

    /// Creates `dir` if needed and writes and removes a probe file in it.
    public static func checkWritable(_ dir: String) throws {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), !isDir.boolValue {
            throw SGEError.io(path: dir, reason: "output folder is a file, not a directory; choose another --out")
        }
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            throw SGEError.io(path: dir, reason: "cannot create the output folder (\(error.localizedDescription)); choose another --out")
        }
        let probe = (dir as NSString).appendingPathComponent(".sge-write-test-\(getpid())")
        guard FileManager.default.createFile(atPath: probe, contents: Data("x".utf8)) else {
            throw SGEError.io(path: dir, reason: "output folder is not writable; choose another --out or fix its permissions")
        }
        try? FileManager.default.removeItem(atPath: probe)
    }

    static func samePath(_ a: String, _ b: String) -> Bool {
        URL(fileURLWithPath: a).standardizedFileURL.resolvingSymlinksInPath().path
            == URL(fileURLWithPath: b).standardizedFileURL.resolvingSymlinksInPath().path
    }
}
