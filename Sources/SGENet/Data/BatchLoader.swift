// Shuffled, augmented mini-batches with a one-batch background prefetch.
//
// Order: epoch e visits the examples in permutation π_e = FisherYates(RNG(mix(seed, e))), so the
// order depends only on (seed, e): a run resumed at epoch e (even mid-epoch, via `skipBatches`)
// sees exactly the batches an uninterrupted run would. Augmentation draws come from a second RNG
// keyed by (seed, e, batch index), so they are reproducible too and independent of prefetching.
//
// Augmentation (per example, on normalised C×H×W data):
//   random crop with padding p: pick (dy, dx) uniform in 0...2p and set
//       out[c, y, x] = in[c, y + dy - p, x + dx - p]   if inside the image,
//                      black[c] = (0 - mean[c]) / std[c]   otherwise,
//     i.e. the image is padded with raw black pixels *before* normalisation — the usual
//     "RandomCrop(32, padding=4) then Normalize" recipe;
//   horizontal flip: with probability 1/2, out[c, y, x] = in[c, y, W - 1 - x].
import Dispatch
import Foundation
import SGETensor

/// Data augmentation applied to each training example.
public struct Augmentation: Sendable, Equatable {
    /// Random-crop padding p in pixels (0: no crop).
    public var cropPadding: Int
    /// Random horizontal flips with probability 1/2.
    public var horizontalFlip: Bool

    public init(cropPadding: Int = 0, horizontalFlip: Bool = false) {
        self.cropPadding = cropPadding
        self.horizontalFlip = horizontalFlip
    }

    public static let none = Augmentation()
    public var isNone: Bool { cropPadding == 0 && !horizontalFlip }
}

/// One mini-batch: `count` normalised images (count×C×H×W) and their labels.
public struct Batch: Sendable {
    public var images: [Float]
    public var labels: [Int32]
    public var shape: Shape
    public var epoch: Int
    /// Index of this batch within its epoch.
    public var index: Int
    public var count: Int { labels.count }
}

/// Data parallelism, like PyTorch's DistributedSampler: rank `rank` of `count` takes positions
/// rank, rank + count, ... of every epoch's order (the same on every rank), count/N of them, and
/// draws its augmentation from its own seed. The default, (0, 1), is one process.
public struct Shard: Sendable, Equatable {
    public let rank: Int
    public let count: Int

    public init(rank: Int = 0, count: Int = 1) {
        self.count = max(1, count)
        self.rank = rank
    }

    /// This rank's part of an epoch's order.
    public func part(of order: [Int]) -> [Int] {
        count == 1 ? order : (0..<(order.count / count)).map { order[$0 * count + rank] }
    }

    /// Batches per epoch of this rank's part of `total` examples.
    public func batches(of total: Int, batchSize: Int, dropLast: Bool) -> Int {
        let examples = total / count
        return dropLast ? examples / batchSize : (examples + batchSize - 1) / batchSize
    }

    /// The seed of augmentation draws: `seed` itself for one process, mixed with the rank otherwise.
    public func seed(_ seed: UInt64) -> UInt64 { count == 1 ? seed : BatchLoader.mix(seed, 0x5A4D_0000, UInt64(rank)) }
}

/// Yields the batches of a dataset epoch by epoch; `next()` returns the batch prepared in the
/// background while the caller computed on the previous one.
public final class BatchLoader {
    public let dataset: Dataset
    public let batchSize: Int
    public let shuffle: Bool
    public let seed: UInt64
    public let augmentation: Augmentation
    /// Skip the final partial batch (true) or yield it smaller (false).
    public let dropLast: Bool
    /// Prepare batch i+1 on a background queue while the caller uses batch i.
    public let prefetch: Bool

    public private(set) var epoch = 0
    public private(set) var shard = Shard()
    private var order: [Int] = []
    private var cursor = 0
    private var pending: (index: Int, group: DispatchGroup, slot: Slot)?
    private let queue = DispatchQueue(label: "sge.batchloader.prefetch", qos: .userInitiated)

    private final class Slot: @unchecked Sendable { var batch: Batch? }

    public init(dataset: Dataset, batchSize: Int, shuffle: Bool = true, seed: UInt64 = 0,
                augmentation: Augmentation = .none, dropLast: Bool = true, prefetch: Bool = true) throws {
        try BatchLoader.checkBatching(examples: dataset.count, of: "dataset from \(dataset.source)", batchSize: batchSize, dropLast: dropLast)
        guard augmentation.cropPadding >= 0 else {
            throw SGEError.invalidArgument("BatchLoader: crop padding \(augmentation.cropPadding) must be >= 0")
        }
        (self.dataset, self.batchSize, self.shuffle, self.seed) = (dataset, batchSize, shuffle, seed)
        (self.augmentation, self.dropLast, self.prefetch) = (augmentation, dropLast, prefetch)
        startEpoch(0)
    }

    deinit { pending?.group.wait() }

    /// Batches in one epoch.
    public var batchesPerEpoch: Int {
        shard.batches(of: dataset.count, batchSize: batchSize, dropLast: dropLast)
    }

    /// Makes this loader yield only shard `rank` of `count` (see `Shard`) and restarts the epoch.
    public func setShard(rank: Int, count: Int) {
        shard = Shard(rank: rank, count: count)
        startEpoch(epoch)
    }

    /// Batches still to come in the current epoch.
    public var remaining: Int { batchesPerEpoch - cursor }

    /// Starts epoch `epoch` (any order: epochs are independent), optionally skipping its first
    /// `skipBatches` batches to resume mid-epoch. Starts preparing the first batch in the background.
    public func startEpoch(_ epoch: Int, skipBatches: Int = 0) {
        pending?.group.wait()
        pending = nil
        self.epoch = epoch
        order = BatchLoader.epochOrder(count: dataset.count, shuffle: shuffle, seed: seed, epoch: epoch, shard: shard)
        cursor = min(max(0, skipBatches), batchesPerEpoch)
        schedule(cursor)
    }

    /// The next batch of the current epoch, or nil when the epoch is over.
    public func next() -> Batch? {
        guard cursor < batchesPerEpoch else { return nil }
        let batch: Batch
        if let p = pending, p.index == cursor {
            p.group.wait()
            batch = p.slot.batch!
        } else {
            batch = makeBatch(cursor)
        }
        pending = nil
        cursor += 1
        schedule(cursor)
        return batch
    }

    private func schedule(_ index: Int) {
        guard prefetch, index < batchesPerEpoch else { return }
        let group = DispatchGroup()
        let slot = Slot()
        // Capture values, not self, so the work never races with startEpoch replacing `order`.
        let (dataset, order, epoch, seed, batchSize, augmentation) = (dataset, order, epoch, shard.seed(seed), batchSize, augmentation)
        queue.async(group: group) {
            slot.batch = BatchLoader.assemble(dataset: dataset, order: order, epoch: epoch, index: index,
                                              batchSize: batchSize, seed: seed, augmentation: augmentation)
        }
        pending = (index, group, slot)
    }

    private func makeBatch(_ index: Int) -> Batch {
        BatchLoader.assemble(dataset: dataset, order: order, epoch: epoch, index: index,
                             batchSize: batchSize, seed: shard.seed(seed), augmentation: augmentation)
    }

    /// The examples epoch `epoch` visits, in order: `permutation` when shuffling, else 0..<count;
    /// with a shard (rank r of N, data-parallel training), every N-th of those from r, like
    /// PyTorch's DistributedSampler, so ranks see disjoint parts of the same permutation. Every
    /// loader (in-memory and image folders) takes its order from here.
    public static func epochOrder(count: Int, shuffle: Bool, seed: UInt64, epoch: Int,
                                  shard: Shard = Shard()) -> [Int] {
        shard.part(of: shuffle ? permutation(count: count, seed: seed, epoch: epoch) : Array(0..<count))
    }

    /// Every loader's checks: a positive batch size, some examples, and a full batch when the last
    /// partial one is dropped (else an epoch would be empty). `what` names the data.
    static func checkBatching(examples: Int, of what: String, batchSize: Int, dropLast: Bool) throws {
        guard batchSize > 0 else { throw SGEError.invalidArgument("batch size \(batchSize) must be positive") }
        guard examples > 0 else { throw SGEError.invalidArgument("\(what) is empty") }
        if dropLast && examples < batchSize {
            throw SGEError.invalidArgument("batch size \(batchSize) exceeds the \(examples) examples of \(what) and the last partial "
                + "batch is dropped, so an epoch would be empty")
        }
    }

    /// The example order of `epoch`: a Fisher-Yates shuffle seeded by (seed, epoch) only.
    public static func permutation(count: Int, seed: UInt64, epoch: Int) -> [Int] {
        var rng = SeededRNG(seed: mix(seed, UInt64(bitPattern: Int64(epoch)), 0x5EED_0001))
        var p = Array(0..<count)
        if count > 1 {
            for i in stride(from: count - 1, to: 0, by: -1) { p.swapAt(i, rng.int(i + 1)) }
        }
        return p
    }

    /// Copies (and augments) the examples of batch `index` of an epoch with the given order.
    static func assemble(dataset: Dataset, order: [Int], epoch: Int, index: Int, batchSize: Int,
                         seed: UInt64, augmentation: Augmentation) -> Batch {
        let start = index * batchSize
        let end = min(start + batchSize, order.count)
        let n = end - start
        let size = dataset.imageSize
        var images = [Float](repeating: 0, count: n * size)
        var labels = [Int32](repeating: 0, count: n)
        var rng = SeededRNG(seed: mix(seed, UInt64(bitPattern: Int64(epoch)), 0xA0_0000_0000 &+ UInt64(index)))
        let black = dataset.blackValue
        dataset.images.withUnsafeBufferPointer { src in
            images.withUnsafeMutableBufferPointer { dst in
                for b in 0..<n {
                    let example = order[start + b]
                    labels[b] = dataset.labels[example]
                    let from = UnsafeBufferPointer(rebasing: src[(example * size)..<((example + 1) * size)])
                    let to = UnsafeMutableBufferPointer(rebasing: dst[(b * size)..<((b + 1) * size)])
                    if augmentation.isNone {
                        _ = to.initialize(from: from)
                    } else {
                        augment(from, into: to, channels: dataset.channels, height: dataset.height, width: dataset.width,
                                black: black, augmentation: augmentation, rng: &rng)
                    }
                }
            }
        }
        return Batch(images: images, labels: labels, shape: Shape([n, dataset.channels, dataset.height, dataset.width]),
                     epoch: epoch, index: index)
    }

    /// Random crop with padding and random horizontal flip of one C×H×W image (see the file comment).
    static func augment(_ src: UnsafeBufferPointer<Float>, into dst: UnsafeMutableBufferPointer<Float>,
                        channels: Int, height: Int, width: Int, black: [Float],
                        augmentation: Augmentation, rng: inout SeededRNG) {
        let p = augmentation.cropPadding
        let dy = p > 0 ? rng.int(2 * p + 1) - p : 0
        let dx = p > 0 ? rng.int(2 * p + 1) - p : 0
        let flip = augmentation.horizontalFlip && rng.next() & 1 == 1
        for c in 0..<channels {
            let plane = c * height * width
            for y in 0..<height {
                let sy = y + dy
                for x in 0..<width {
                    let sx = (flip ? width - 1 - x : x) + dx
                    let inside = sy >= 0 && sy < height && sx >= 0 && sx < width
                    dst[plane + y * width + x] = inside ? src[plane + sy * width + sx] : black[c]
                }
            }
        }
    }

    /// SplitMix64-style mixing of three words into one seed.
    static func mix(_ a: UInt64, _ b: UInt64, _ c: UInt64) -> UInt64 {
        func f(_ x: UInt64) -> UInt64 {
            var z = x &+ 0x9E37_79B9_7F4A_7C15
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        return f(f(f(a) ^ b) ^ c)
    }
}
