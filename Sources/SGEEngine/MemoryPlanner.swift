/// Offsets for buffers with known lifetimes in one arena, sharing memory where lifetimes do not
/// overlap: the "greedy by size" planner of TFLite's arena planner (Pisarchyk & Lee, "Efficient
/// memory management for deep neural net inference", 2020).
///
/// Blocks are placed largest first (ties: earlier request first). A block may not share bytes with
/// any already placed block whose lifetime overlaps its own; among the gaps those blocks leave in
/// address order it takes the smallest that fits (best fit), else it goes above the highest one.
/// Lifetimes are closed intervals `[first, last]` on a logical clock, so two blocks conflict when
/// `a.first <= b.last && b.first <= a.last`. Offsets are multiples of `alignment` and every block
/// is sized up to a multiple of it. The result is at most the sum of the aligned sizes and at least
/// the largest total of aligned sizes live at one time; O(n²) in the number of blocks.
///
/// With `arenaLimit` (a device's largest allocation) no block crosses a multiple of it, so the
/// address space cuts into arenas of at most that size (`arenaIndex`); blocks are at most that big.
public enum MemoryPlanner {
    public struct Block: Sendable, Equatable {
        public var bytes: Int
        public var first: Int
        public var last: Int
        public init(bytes: Int, first: Int, last: Int) { (self.bytes, self.first, self.last) = (bytes, first, last) }
        public func overlapsInTime(_ o: Block) -> Bool { first <= o.last && o.first <= last }
    }

    /// `bytes` rounded up to a multiple of `alignment`.
    public static func aligned(_ bytes: Int, _ alignment: Int) -> Int { (bytes + alignment - 1) / alignment * alignment }

    /// Each block's offset (in the order given) and the arena size in bytes.
    public static func plan(_ blocks: [Block], alignment: Int, arenaLimit: Int = .max) -> (offsets: [Int], arenaBytes: Int) {
        let align = max(alignment, 1)
        let limit = cut(arenaLimit: arenaLimit, alignment: align)
        let order = blocks.indices.sorted { blocks[$0].bytes != blocks[$1].bytes ? blocks[$0].bytes > blocks[$1].bytes : $0 < $1 }
        var offsets = [Int](repeating: 0, count: blocks.count)
        var placed: [Int] = []  // indices of placed blocks, kept sorted by offset
        var arena = 0
        // The lowest offset from `at` where `size` bytes do not cross a multiple of the limit.
        func fitted(_ at: Int, _ size: Int) -> Int {
            guard limit != .max, at / limit != (at + size - 1) / limit else { return at }
            return (at / limit + 1) * limit
        }
        for i in order {
            let size = aligned(blocks[i].bytes, align)
            var best: Int?, bestGap = Int.max
            var cursor = 0  // lowest free offset above the conflicting blocks seen so far
            for j in placed where blocks[j].overlapsInTime(blocks[i]) {
                let at = fitted(cursor, size), gap = offsets[j] - cursor
                if offsets[j] - at >= size && gap < bestGap { (best, bestGap) = (at, gap) }
                cursor = max(cursor, offsets[j] + aligned(blocks[j].bytes, align))
            }
            let offset = best ?? fitted(cursor, size)
            offsets[i] = offset
            arena = max(arena, offset + size)
            let at = placed.firstIndex { offsets[$0] > offset } ?? placed.count
            placed.insert(i, at: at)
        }
        return (offsets, arena)
    }

    /// Which arena of at most `arenaLimit` bytes an offset of `plan(_:alignment:arenaLimit:)` is
    /// in, and the offset there.
    public static func arenaIndex(_ offset: Int, alignment: Int, arenaLimit: Int) -> (arena: Int, offset: Int) {
        let limit = cut(arenaLimit: arenaLimit, alignment: alignment)
        return (offset / limit, offset % limit)
    }

    /// Where the address space is cut into arenas: `arenaLimit` rounded down to the alignment.
    public static func cut(arenaLimit: Int, alignment: Int) -> Int {
        let align = max(alignment, 1)
        return arenaLimit == .max ? .max : max(arenaLimit / align * align, align)
    }

    /// The largest total of aligned sizes live at one clock time: a lower bound for any arena.
    public static func peakLive(_ blocks: [Block], alignment: Int) -> Int {
        var events: [(time: Int, delta: Int)] = []
        for b in blocks {
            events.append((b.first, aligned(b.bytes, max(alignment, 1))))
            events.append((b.last + 1, -aligned(b.bytes, max(alignment, 1))))
        }
        events.sort { $0.time != $1.time ? $0.time < $1.time : $0.delta < $1.delta }
        var live = 0, peak = 0
        for e in events {
            live += e.delta
            peak = max(peak, live)
        }
        return peak
    }
}
