// What the trainer learns from: labelled images that make batches, in memory (`Dataset`) or
// streamed from files (`ImageFolder`), and the batch sources they make.
import Foundation
import SGETensor

/// Labelled images of one shape that can be cut into batches.
public protocol LabelledImages {
    var count: Int { get }
    var channels: Int { get }
    var height: Int { get }
    var width: Int { get }
    var classNames: [String] { get }
    /// Where the data came from, for messages and checkpoints.
    var source: String { get }
    /// A batch source over these images, positioned at epoch 0. `training` picks the training
    /// transform where the data has one (image folders); evaluation passes `.none` and false.
    func makeBatches(batchSize: Int, shuffle: Bool, seed: UInt64, augmentation: Augmentation, dropLast: Bool,
                     training: Bool) throws -> any BatchSource
    /// Examples `range` (clamped to 0..<count), e.g. one rank's part of a sharded evaluation.
    func slice(_ range: Range<Int>) -> any LabelledImages
}

/// Yields batches epoch by epoch (`BatchLoader`, `ImageFolderLoader`).
public protocol BatchSource: AnyObject {
    var batchesPerEpoch: Int { get }
    /// Starts `epoch` (any order), skipping its first `skipBatches` batches.
    func startEpoch(_ epoch: Int, skipBatches: Int)
    /// Yields only shard `rank` of `count` from now on (data-parallel training; see `BatchLoader.epochOrder`).
    func setShard(rank: Int, count: Int)
    /// The next batch of the current epoch, or nil when the epoch is over.
    func next() -> Batch?
    /// The examples skipped so far in the current epoch as corrupt or unreadable.
    var skipped: SkippedImages { get }
}

/// Corrupt or unreadable examples met in an epoch: how many, and the first few as "path: reason".
public struct SkippedImages: Sendable, Equatable {
    public var count = 0
    public var first: [String] = []
    public init(count: Int = 0, first: [String] = []) {
        self.count = count
        self.first = first
    }

    /// The end-of-epoch warning ("3 images skipped as corrupt or unreadable: a.jpg: ...; ..."), or
    /// nil when nothing was skipped.
    public func warning(_ context: String) -> String? {
        guard count > 0 else { return nil }
        return "warning: \(context): \(count) image\(count == 1 ? "" : "s") skipped as corrupt or unreadable"
            + " (each replaced by the next readable one): " + first.joined(separator: "; ") + (count > first.count ? "; ..." : "")
    }
}

extension BatchSource {
    public var skipped: SkippedImages { SkippedImages() }
}

extension LabelledImages {
    public var classes: Int { classNames.count }
}

extension BatchLoader: BatchSource {}

extension Dataset: LabelledImages {
    /// A `BatchLoader` (random crop with padding and flips as `augmentation` says; `training` unused).
    public func makeBatches(batchSize: Int, shuffle: Bool, seed: UInt64, augmentation: Augmentation, dropLast: Bool,
                            training: Bool) throws -> any BatchSource {
        try BatchLoader(dataset: self, batchSize: batchSize, shuffle: shuffle, seed: seed, augmentation: augmentation,
                        dropLast: dropLast, prefetch: true)
    }
}

/// A fixed set of threads running submitted jobs in FIFO order.
final class WorkerPool: @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [() -> Void] = []
    private var head = 0
    private var stopping = false
    let threads: Int

    init(threads: Int, name: String) {
        self.threads = max(1, threads)
        for i in 0..<self.threads {
            let t = Thread { [self] in loop() }
            t.name = "\(name)-\(i)"
            t.start()
        }
    }

    func submit(_ job: @escaping () -> Void) {
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Lets the threads finish the queued jobs and exit.
    func shutdown() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while head == jobs.count && !stopping { condition.wait() }
            if head == jobs.count { condition.unlock(); return }
            let job = jobs[head]
            head += 1
            if head > 1024 && head * 2 > jobs.count { jobs.removeFirst(head); head = 0 }
            condition.unlock()
            job()
        }
    }
}
