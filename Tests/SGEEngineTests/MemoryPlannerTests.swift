import SGEEngine
import SGETensor
import XCTest

/// The arena planner (`MemoryPlanner`): blocks whose lifetimes overlap never share bytes, offsets
/// are aligned, and the arena lies between the peak live total and the plain sum.
final class MemoryPlannerTests: XCTestCase {
    typealias Block = MemoryPlanner.Block

    /// Checks every invariant of a plan of `blocks`; returns the arena size.
    @discardableResult
    func checkPlan(_ blocks: [Block], alignment: Int, file: StaticString = #filePath, line: UInt = #line) -> Int {
        let (offsets, arena) = MemoryPlanner.plan(blocks, alignment: alignment)
        XCTAssertEqual(offsets.count, blocks.count, file: file, line: line)
        for (i, b) in blocks.enumerated() {
            XCTAssertEqual(offsets[i] % alignment, 0, "block \(i) offset \(offsets[i]) is not \(alignment)-aligned", file: file, line: line)
            XCTAssertLessThanOrEqual(offsets[i] + b.bytes, arena, "block \(i) ends past the arena", file: file, line: line)
            for j in 0..<i where b.overlapsInTime(blocks[j]) {
                let disjoint = offsets[i] + b.bytes <= offsets[j] || offsets[j] + blocks[j].bytes <= offsets[i]
                XCTAssertTrue(disjoint, "blocks \(j) and \(i) are live together but share bytes: [\(offsets[j]), +\(blocks[j].bytes)) "
                              + "and [\(offsets[i]), +\(b.bytes))", file: file, line: line)
            }
        }
        let sum = blocks.reduce(0) { $0 + MemoryPlanner.aligned($1.bytes, alignment) }
        XCTAssertLessThanOrEqual(arena, sum, "arena larger than allocating every block", file: file, line: line)
        XCTAssertGreaterThanOrEqual(arena, MemoryPlanner.peakLive(blocks, alignment: alignment), file: file, line: line)
        return arena
    }

    /// Four blocks, each live with two others at most: A(256, t0-1) B(128, t0-3) C(256, t2-5)
    /// D(128, t4-5). At every time 384 bytes are live, so 384 is the optimum (the sum is 768).
    func testHandCaseReachesTheOptimum() {
        let blocks = [Block(bytes: 256, first: 0, last: 1), Block(bytes: 128, first: 0, last: 3),
                      Block(bytes: 256, first: 2, last: 5), Block(bytes: 128, first: 4, last: 5)]
        XCTAssertEqual(MemoryPlanner.peakLive(blocks, alignment: 64), 384)
        XCTAssertEqual(checkPlan(blocks, alignment: 64), 384)
        let (offsets, _) = MemoryPlanner.plan(blocks, alignment: 64)
        XCTAssertEqual(offsets[0], offsets[2], "A and C never live together: they share their bytes")
    }

    /// A chain of activations as a forward pass makes them (each read by the next, then freed)
    /// needs two buffers' worth, not n; unaligned sizes are rounded up to the alignment.
    func testChainReusesTwoBuffers() {
        let blocks = (0..<10).map { Block(bytes: 1000, first: $0, last: $0 + 1) }
        XCTAssertEqual(checkPlan(blocks, alignment: 128), 2 * 1024)
    }

    /// Best fit: a block goes into the smallest gap that holds it. N (live at t5-6) conflicts with
    /// the long-lived A, C and F, which the short-lived D and B push apart: gaps of 350 bytes at 400
    /// and 200 bytes at 1050. N (150 bytes) takes the 200-byte gap (first fit would take the other).
    func testBestFitPicksTheSmallestGap() {
        let blocks = [Block(bytes: 400, first: 0, last: 10), Block(bytes: 350, first: 0, last: 1), Block(bytes: 300, first: 0, last: 10),
                      Block(bytes: 200, first: 0, last: 1), Block(bytes: 160, first: 0, last: 10), Block(bytes: 150, first: 5, last: 6)]
        XCTAssertEqual(checkPlan(blocks, alignment: 1), 1410)
        let (offsets, _) = MemoryPlanner.plan(blocks, alignment: 1)
        XCTAssertEqual(offsets, [0, 400, 750, 1050, 1250, 1050])
    }

    /// With an arena limit no block crosses a multiple of it (each lies in one arena), and the
    /// invariants still hold.
    func testArenaLimitKeepsEachBlockInOneArena() {
        var rng = SeededRNG(seed: 5)
        let blocks = (0..<60).map { _ -> Block in
            let first = Int(rng.uniform() * 50)
            return Block(bytes: 100 + Int(rng.uniform() * 900), first: first, last: first + Int(rng.uniform() * 20))
        }
        let limit = 2000
        let (offsets, arena) = MemoryPlanner.plan(blocks, alignment: 64, arenaLimit: limit)
        XCTAssertGreaterThan(arena, limit, "the case needs several arenas")
        for (i, b) in blocks.enumerated() {
            let place = MemoryPlanner.arenaIndex(offsets[i], alignment: 64, arenaLimit: limit)
            XCTAssertLessThanOrEqual(place.offset + b.bytes, MemoryPlanner.cut(arenaLimit: limit, alignment: 64), "block \(i) crosses an arena's end")
            XCTAssertEqual(place.arena * 1984 + place.offset, offsets[i])
            for j in 0..<i where b.overlapsInTime(blocks[j]) {
                XCTAssertTrue(offsets[i] + b.bytes <= offsets[j] || offsets[j] + blocks[j].bytes <= offsets[i], "blocks \(j) and \(i)")
            }
        }
    }

    /// Random lifetimes and sizes (fixed seeds): the invariants hold and reuse happens.
    func testRandomIntervalsNeverShareLiveBytes() {
        var rng = SeededRNG(seed: 17)
        for trial in 0..<40 {
            let n = 1 + trial * 3
            let blocks = (0..<n).map { _ -> Block in
                let first = Int(rng.uniform() * 100), length = Int(rng.uniform() * 30)
                return Block(bytes: 1 + Int(rng.uniform() * 5000), first: first, last: first + length)
            }
            let arena = checkPlan(blocks, alignment: trial % 2 == 0 ? 128 : 4)
            if n > 60 { XCTAssertLessThan(arena, blocks.reduce(0) { $0 + MemoryPlanner.aligned($1.bytes, 128) }) }
        }
        XCTAssertEqual(MemoryPlanner.plan([], alignment: 128).arenaBytes, 0)
    }
}
