import Foundation
import SGEOpenCL

/// The memory plan of training steps on one device context: between `beginStep(key)` and
/// `endStep()` device buffer requests are recorded and, once the recording is stable, served from
/// one arena planned by lifetime (`MemoryPlanner`).
///
/// - Recording: each request of a step with a key not yet planned comes from the pool and is noted
///   in order with its lifetime on a logical clock (one tick per request or release). Buffers still
///   alive at `endStep` (parameters' gradients, momentum, workspaces, the returned loss) are
///   excluded from the plan; their later requests keep using the pool.
/// - Planning: when two consecutive recordings with the same key request the same sizes in the
///   same order with the same buffers surviving (the first step also creates caches that later steps
///   reuse), the step's buffers are packed into one arena (cut into several at the device's largest
///   allocation); every planned request gets its sub-buffer there, made once; the pool's kept buffers
///   are released and the arena is zeroed once (so its pages are mapped before the first planned step).
/// - Serving: the i-th request of a later step with that key gets the i-th sub-buffer, the same
///   cl_mem every step, so a steady-state step creates none. Reuse within the arena relies on the
///   in-order queue exactly as the pool does (a region's next user runs after every earlier command).
/// - Safety: a request whose size differs from the recording's ends the plan for the rest of the
///   step (requests go to the pool) and the key is recorded again; a planned region that overlaps one
///   still held (a tensor kept longer than when recorded) is not handed out: that request goes to the
///   pool. Both are counted (`Stats`).
///
/// Outside a step nothing changes. `SGE_MEMORY_PLAN=0` (or `enabled = false`) turns plans off.
public final class StepMemory: StepBufferSource, BufferReleaseObserver, @unchecked Sendable {
    public struct Stats: Sendable, Equatable {
        /// Plans made, and plans dropped because a step's requests diverged from the recording.
        public var plansMade = 0
        public var plansDropped = 0
        /// Requests served from an arena; requests of planned steps that went to the pool after a
        /// size mismatch (`fallbacks`) or because their region was still held (`conflicts`).
        public var planned = 0
        public var fallbacks = 0
        public var conflicts = 0
        /// The most recent plan: its arena, the sum of the requests it serves (each rounded up to the
        /// alignment), the largest total live at once (a lower bound), and its number of requests.
        public var arenaBytes = 0
        public var requestedBytes = 0
        public var peakLiveBytes = 0
        public var slots = 0
        public var arenas = 0
        /// The last ended step (planned or not, plans on or off): its device buffer requests and their
        /// total bytes (what a step without any reuse would allocate).
        public var stepRequests = 0
        public var stepRequestedBytes = 0
        public init() {}
    }

    /// Whether steps are planned; default from `SGE_MEMORY_PLAN` (anything but "0": on).
    public var enabled = ProcessInfo.processInfo.environment["SGE_MEMORY_PLAN"] != "0"
    /// Plans kept at most (least recently used dropped first): one per batch shape in use.
    public var maxPlans = 4
    /// Recordings of one key without two agreeing in a row after which it is no longer recorded.
    public var maxRecordings = 6
    /// The largest arena in bytes; nil: the device's largest allocation. Tests lower it to cut plans
    /// into several arenas.
    public var arenaLimitBytes: Int?
    /// Called with a one-line summary when a plan is made (`SGE_VERBOSE=1` prints it).
    public var log: ((String) -> Void)?

    public private(set) var stats = Stats()

    unowned let context: CLContext
    private let lock = NSRecursiveLock()

    private struct Recording: Equatable {
        var bytes: [Int] = []
        var first: [Int] = []
        var last: [Int] = []
        var clock = 0
        /// Whether the request survived the step (excluded from the plan).
        var survivors: [Bool] { last.map { $0 < 0 } }
    }

    private final class Plan {
        let arenas: [CLBuffer]
        /// Per request: its sub-buffer, nil for a survivor (served by the pool).
        var slots: [CLBuffer?]
        let sizes: [Int]
        /// Per request: the other planned requests whose regions share bytes with its own.
        let overlaps: [[Int32]]
        var lastUse = 0
        init(arenas: [CLBuffer], slots: [CLBuffer?], sizes: [Int], overlaps: [[Int32]]) {
            (self.arenas, self.slots, self.sizes, self.overlaps) = (arenas, slots, sizes, overlaps)
        }
    }

    private enum Mode {
        case idle
        case recording(generation: Int)
        case serving(Plan)
        /// A planned step whose requests diverged: the rest goes to the pool.
        case diverged
        /// A step with a key that is not planned or recorded.
        case unplanned
    }

    private var mode = Mode.idle
    private var key = ""
    private var recording = Recording()
    private var generation = 0
    private var next = 0
    private var previous: [String: Recording] = [:]
    private var recordings: [String: Int] = [:]
    private var given: Set<String> = []
    private var plans: [String: Plan] = [:]
    private var useClock = 0
    private var requests = 0, requestedBytes = 0

    init(context: CLContext) { self.context = context }

    /// The step memory of `context`, attached on first use.
    public static func of(_ context: CLContext) -> StepMemory {
        attachLock.lock()
        defer { attachLock.unlock() }
        if let s = context.stepBuffers as? StepMemory { return s }
        let s = StepMemory(context: context)
        if ProcessInfo.processInfo.environment["SGE_VERBOSE"] == "1" {
            s.log = { line in FileHandle.standardError.write(Data((line + "\n").utf8)) }
        }
        context.stepBuffers = s
        return s
    }
    private static let attachLock = NSLock()

    /// Starts a step whose buffers are planned under `key` (model and batch shape). A step still
    /// open is ended first.
    public func beginStep(_ key: String) {
        lock.lock()
        defer { lock.unlock() }
        if case .idle = mode {} else { endStepLocked() }
        self.key = key
        next = 0
        (requests, requestedBytes) = (0, 0)
        useClock += 1
        if !enabled {
            mode = .unplanned
        } else if let plan = plans[key] {
            plan.lastUse = useClock
            mode = .serving(plan)
        } else if given.contains(key) {
            mode = .unplanned
        } else {
            generation += 1
            recording = Recording()
            mode = .recording(generation: generation)
        }
    }

    /// Ends the step: a recording may become a plan (a plan that cannot be made leaves the key to
    /// the pool); a diverged plan is dropped.
    public func endStep() {
        lock.lock()
        defer { lock.unlock() }
        endStepLocked()
    }

    private func endStepLocked() {
        let ended = mode
        mode = .idle
        if case .idle = ended {} else { (stats.stepRequests, stats.stepRequestedBytes) = (requests, requestedBytes) }
        switch ended {
        case .idle, .unplanned: return
        case .serving(let plan):
            if next != plan.sizes.count { drop(key) }
        case .diverged:
            drop(key)
        case .recording:
            let r = recording
            recording = Recording()
            recordings[key, default: 0] += 1
            if let p = previous[key], p.bytes == r.bytes, p.survivors == r.survivors {
                previous[key] = nil
                makePlan(r)
            } else if recordings[key]! >= maxRecordings {
                previous[key] = nil
                given.insert(key)
            } else {
                previous[key] = r
            }
        }
    }

    private func drop(_ key: String) {
        plans[key] = nil
        stats.plansDropped += 1
        // Recorded again; a key whose plans keep diverging is given up.
        if (recordings[key] ?? 0) >= maxRecordings { given.insert(key) }
    }

    /// Plans `r`; a failure (an allocation the device refuses) leaves this key to the pool.
    private func makePlan(_ r: Recording) {
        do {
            try makePlanThrowing(r)
        } catch {
            given.insert(key)
            log?("memory plan \(key): \(error); this step shape keeps using the buffer pool")
        }
    }

    private func makePlanThrowing(_ r: Recording) throws {
        let alignment = try context.subBufferAlignment()
        var blocks: [MemoryPlanner.Block] = []
        var requestIndex: [Int] = []
        for i in r.bytes.indices where r.last[i] >= 0 {
            blocks.append(.init(bytes: r.bytes[i], first: r.first[i], last: r.last[i]))
            requestIndex.append(i)
        }
        guard !blocks.isEmpty else { return }
        // No arena larger than the device's largest allocation: the plan may cut into several.
        let limit = min(arenaLimitBytes ?? .max, Int(clamping: context.info.maxAllocation))
        let (offsets, arenaBytes) = MemoryPlanner.plan(blocks, alignment: alignment, arenaLimit: limit)
        while plans.count >= maxPlans, let oldest = plans.min(by: { $0.value.lastUse < $1.value.lastUse })?.key { plans[oldest] = nil }
        // The recording steps' buffers are free now; the arena replaces them.
        context.releasePooledBuffers()
        // Every arena but the last is cut at the (aligned) limit.
        let last = MemoryPlanner.arenaIndex(arenaBytes - 1, alignment: alignment, arenaLimit: limit)
        var arenas: [CLBuffer] = []
        for a in 0...last.arena {
            let bytes = a == last.arena ? last.offset + 1 : MemoryPlanner.cut(arenaLimit: limit, alignment: alignment)
            arenas.append(try context.unpooledBuffer(bytes: bytes))
            // Touched now, so the first planned step does not page-fault it in (CPU drivers map a
            // new buffer's pages on first write).
            try context.enqueueZero(arenas[a], bytes: bytes / 4 * 4)
        }
        var slots = [CLBuffer?](repeating: nil, count: r.bytes.count)
        var regions: [(start: Int, end: Int, request: Int)] = []
        for (b, i) in requestIndex.enumerated() {
            let place = MemoryPlanner.arenaIndex(offsets[b], alignment: alignment, arenaLimit: limit)
            slots[i] = try context.subBuffer(of: arenas[place.arena], offset: place.offset, bytes: r.bytes[i])
            regions.append((offsets[b], offsets[b] + r.bytes[i], i))
        }
        // Regions sharing bytes: sweep in start order.
        regions.sort { $0.start < $1.start }
        var overlaps = [[Int32]](repeating: [], count: r.bytes.count)
        for a in regions.indices {
            var b = a + 1
            while b < regions.count, regions[b].start < regions[a].end {
                overlaps[regions[a].request].append(Int32(regions[b].request))
                overlaps[regions[b].request].append(Int32(regions[a].request))
                b += 1
            }
        }
        let plan = Plan(arenas: arenas, slots: slots, sizes: r.bytes, overlaps: overlaps)
        plan.lastUse = useClock
        plans[key] = plan
        let requested = blocks.reduce(0) { $0 + MemoryPlanner.aligned($1.bytes, alignment) }
        let peak = MemoryPlanner.peakLive(blocks, alignment: alignment)
        stats.plansMade += 1
        (stats.arenaBytes, stats.requestedBytes, stats.peakLiveBytes, stats.slots) = (arenaBytes, requested, peak, blocks.count)
        stats.arenas = arenas.count
        log?(String(format: "memory plan %@: %d buffers, %d arena(s) of %.1f MiB (requested %.1f MiB, peak live %.1f MiB), %d kept outside",
                    key, blocks.count, arenas.count, Double(arenaBytes) / 1048576, Double(requested) / 1048576, Double(peak) / 1048576,
                    r.bytes.count - blocks.count))
    }

    public func buffer(bytes: Int, context: CLContext) throws -> CLBuffer? {
        lock.lock()
        defer { lock.unlock() }
        if case .idle = mode { return nil }
        requests += 1
        requestedBytes += bytes
        switch mode {
        case .idle, .unplanned:
            return nil
        case .diverged:
            stats.fallbacks += 1
            return nil
        case .recording(let generation):
            let b = try context.pooledBuffer(bytes: bytes)
            b.releaseObserver = self
            b.releaseTag = generation << 32 | recording.bytes.count
            recording.bytes.append(bytes)
            recording.first.append(recording.clock)
            recording.last.append(-1)
            recording.clock += 1
            return b
        case .serving(let plan):
            let i = next
            next += 1
            guard i < plan.sizes.count, plan.sizes[i] == bytes else {
                mode = .diverged
                stats.fallbacks += 1
                return nil
            }
            guard plan.slots[i] != nil else { return nil }
            // Every region sharing bytes with this one must be free (held by the plan alone).
            guard isKnownUniquelyReferenced(&plan.slots[i]) else {
                stats.conflicts += 1
                return nil
            }
            for j in plan.overlaps[i] where !isKnownUniquelyReferenced(&plan.slots[Int(j)]) {
                stats.conflicts += 1
                return nil
            }
            stats.planned += 1
            return plan.slots[i]
        }
    }

    public func bufferReleased(tag: Int) {
        lock.lock()
        defer { lock.unlock() }
        guard case .recording(let generation) = mode, tag >> 32 == generation else { return }
        let i = tag & 0xFFFF_FFFF
        guard i < recording.last.count else { return }
        recording.last[i] = recording.clock
        recording.clock += 1
    }

    /// Drops every plan, recording and counter (the arenas are released once no tensor holds their
    /// regions).
    public func reset() {
        lock.lock()
        defer { lock.unlock() }
        stats = Stats()
        arenaLimitBytes = nil
        mode = .idle
        plans = [:]
        previous = [:]
        recordings = [:]
        given = []
    }

    /// Device bytes held by the plans' arenas.
    public var arenaBytes: Int {
        lock.lock()
        defer { lock.unlock() }
        return plans.values.reduce(0) { $0 + $1.arenas.reduce(0) { $0 + $1.bytes } }
    }
}
