// Batches of an image folder, decoded and transformed on a pool of threads, several batches ahead.
//
// Order: the epoch's example order is `BatchLoader.epochOrder` (the same permutation of (seed,
// epoch) as in-memory data); batch b holds positions b·B ..< (b+1)·B of it.
// Augmentation: the example at position p of epoch e draws its crop and flip from
// RNG(mix(seed, e, p)), so a batch is the same whatever the thread count or timing.
// Corrupt or unreadable files: the example at position p is replaced by the next readable example
// in the epoch order (p+1, p+2, ..., wrapping), keeping every batch full; its label comes along.
// The file is remembered as bad (not decoded again), counted once per epoch, and the first few are
// named in `skipped` for the end-of-epoch warning. If no file at all is readable the example is
// black with label 0 (and every image is counted).
import Foundation
import SGETensor

/// Yields the batches of an `ImageFolder`, decoded by `folder.threads` threads.
public final class ImageFolderLoader: BatchSource {
    public let folder: ImageFolder
    public let batchSize: Int
    public let shuffle: Bool
    public let seed: UInt64
    /// RandomResizedCrop + flip (true) or the evaluation centre crop (false).
    public let augment: Bool
    public let dropLast: Bool
    public private(set) var epoch = 0

    private let pool: WorkerPool
    private var order: [Int] = []
    private var cursor = 0
    private var pending: [Int: Pending] = [:]
    /// Guards `bad`, `skippedThisEpoch`, `skipNames` and `generation`.
    private let lock = NSLock()
    private var bad: [Int: String] = [:]
    private var skippedThisEpoch: Set<Int> = []
    private var skipNames: [String] = []
    private var generation = 0
    static let namedSkips = 5

    /// One batch being filled: workers write disjoint examples; `wait()` returns when all are done.
    private final class Pending: @unchecked Sendable {
        let images: UnsafeMutableBufferPointer<Float>
        let labels: UnsafeMutableBufferPointer<Int32>
        let condition = NSCondition()
        var remaining: Int
        init(count: Int, size: Int) {
            images = .allocate(capacity: count * size)
            images.initialize(repeating: 0)
            labels = .allocate(capacity: count)
            labels.initialize(repeating: 0)
            remaining = count
        }
        deinit { images.deallocate(); labels.deallocate() }
        func done() { condition.lock(); remaining -= 1; if remaining == 0 { condition.broadcast() }; condition.unlock() }
        func wait() { condition.lock(); while remaining > 0 { condition.wait() }; condition.unlock() }
    }

    public init(folder: ImageFolder, batchSize: Int, shuffle: Bool = true, seed: UInt64 = 0, augment: Bool = true,
                dropLast: Bool = true) throws {
        try BatchLoader.checkBatching(examples: folder.count, of: "image folder \(folder.root)", batchSize: batchSize, dropLast: dropLast)
        self.folder = folder
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.seed = seed
        self.augment = augment
        self.dropLast = dropLast
        pool = WorkerPool(threads: folder.threads, name: "sge.imagefolder")
        startEpoch(0)
    }

    deinit {
        for (_, p) in pending { p.wait() }
        pool.shutdown()
    }

    public private(set) var shard = Shard()

    /// Makes this loader yield only shard `rank` of `count` and restarts the epoch.
    public func setShard(rank: Int, count: Int) {
        shard = Shard(rank: rank, count: count)
        startEpoch(epoch)
    }

    public var batchesPerEpoch: Int {
        shard.batches(of: folder.count, batchSize: batchSize, dropLast: dropLast)
    }

    public var skipped: SkippedImages {
        lock.lock(); defer { lock.unlock() }
        return SkippedImages(count: skippedThisEpoch.count, first: skipNames)
    }

    public func startEpoch(_ epoch: Int, skipBatches: Int = 0) {
        lock.lock()
        generation += 1  // queued work of the old epoch returns at once
        lock.unlock()
        for (_, p) in pending { p.wait() }
        pending = [:]
        lock.lock()
        skippedThisEpoch = []
        skipNames = []
        lock.unlock()
        self.epoch = epoch
        order = BatchLoader.epochOrder(count: folder.count, shuffle: shuffle, seed: seed, epoch: epoch, shard: shard)
        cursor = min(max(0, skipBatches), batchesPerEpoch)
        scheduleAhead()
    }

    public func next() -> Batch? {
        guard cursor < batchesPerEpoch else { return nil }
        if pending[cursor] == nil { schedule(cursor) }
        let p = pending.removeValue(forKey: cursor)!
        p.wait()
        let n = p.labels.count
        let batch = Batch(images: Array(p.images), labels: Array(p.labels),
                          shape: Shape([n, 3, folder.imageSize, folder.imageSize]), epoch: epoch, index: cursor)
        cursor += 1
        scheduleAhead()
        return batch
    }

    private func scheduleAhead() {
        for b in cursor..<min(cursor + folder.batchesAhead, batchesPerEpoch) where pending[b] == nil { schedule(b) }
    }

    private func schedule(_ index: Int) {
        let start = index * batchSize
        let n = min(batchSize, order.count - start)
        let size = 3 * folder.imageSize * folder.imageSize
        let p = Pending(count: n, size: size)
        pending[index] = p
        lock.lock()
        let gen = generation
        lock.unlock()
        let (order, epoch) = (order, epoch)
        for b in 0..<n {
            pool.submit { [weak self] in
                defer { p.done() }
                guard let self else { return }
                self.lock.lock()
                let current = self.generation == gen
                self.lock.unlock()
                guard current else { return }
                let dst = UnsafeMutableBufferPointer(rebasing: p.images[(b * size)..<((b + 1) * size)])
                p.labels[b] = self.fillExample(position: start + b, order: order, epoch: epoch, into: dst)
            }
        }
    }

    /// Fills the example at `position` of the epoch (or its replacement); returns its label.
    private func fillExample(position: Int, order: [Int], epoch: Int, into dst: UnsafeMutableBufferPointer<Float>) -> Int32 {
        let key = BatchLoader.mix(shard.seed(seed), UInt64(bitPattern: Int64(epoch)), 0xB0_0000_0000 &+ UInt64(position))
        for attempt in 0..<order.count {
            let example = order[(position + attempt) % order.count]
            lock.lock()
            let known = bad[example]
            lock.unlock()
            if let known {
                noteSkip(example, reason: known)
                continue
            }
            var rng = SeededRNG(seed: key)
            do {
                try folder.fill(example, augment: augment, rng: &rng, into: dst)
                return folder.labels[example]
            } catch {
                let reason: String
                switch error {
                case SGEError.corruptFile(_, let r), SGEError.io(_, let r): reason = r
                default: reason = "\(error)"
                }
                lock.lock()
                bad[example] = reason
                lock.unlock()
                noteSkip(example, reason: reason)
            }
        }
        let black = (0..<3).map { -folder.mean[$0] / folder.std[$0] }
        let plane = dst.count / 3
        for i in 0..<dst.count { dst[i] = black[i / plane] }
        return 0
    }

    private func noteSkip(_ example: Int, reason: String) {
        lock.lock()
        if skippedThisEpoch.insert(example).inserted && skipNames.count < ImageFolderLoader.namedSkips {
            skipNames.append("\(folder.paths[example]): \(reason)")
        }
        lock.unlock()
    }
}
