import Foundation
import SGEOpenCL
import SGEReference
import SGETensor

/// The implementations a convolution direction can run with under the default `.wide` algorithm.
public enum ConvPath: String, CaseIterable, Sendable {
    /// conv_cpu.cl's cache-blocked kernels, reading and writing NCHW, over chunks of im2col columns
    /// (ConvCPU.swift). CPU drivers.
    case cpuKernels = "cpu-kernels"
    /// The same products as an implicit GEMM: each work-item gathers its columns into local memory
    /// (conv_implicit_cpu.cl, ConvImplicitCPU.swift; where it applies, else the chunked columns). CPU drivers.
    case cpuImplicit = "cpu-implicit"
    /// CLBlast GEMMs over the wide layout; the backward cut by `ConvBackwardPlan.choose`. GPUs.
    case clblast
    /// Backward only: both CLBlast GEMMs per image, reading the output gradient in NCHW.
    case clblastPerImage = "clblast-per-image"
    /// Backward only: one CLBlast GEMM per chunk for each gradient, over the wide copy.
    case clblastOneGemm = "clblast-one-gemm"
    /// Backward only: the weight gradient split-K over about 8 slices of images (one strided-batched
    /// GEMM and a sum of the partials), the input gradient as one GEMM per chunk: a skinny grad-weight
    /// product (K·C·9 outputs, N·H·W deep) then has 8× the work-groups of one GEMM. GPUs.
    case clblastSplitK = "clblast-split"
    /// Winograd F(2×2, 3×3) (ConvWinograd.swift) for 3×3 stride-1 convolutions: the forward, and the
    /// input gradient with the weight gradient by CLBlast (GPUs) or conv_cpu.cl's chunked columns.
    case winograd
    /// Backward only, CPU drivers: Winograd's input gradient, the implicit GEMM's weight gradient.
    case winogradImplicit = "winograd-implicit"
    /// Backward only, CPU drivers: Winograd's input gradient AND weight gradient
    /// (`winogradWeightGrad`: winograd_gw_partials + winograd_gw_finish).
    case winogradFull = "winograd-full"

    /// The backward plan a CLBlast path runs (nil for the others).
    func backwardPlan(_ s: Reference.Conv2dShape) -> ConvBackwardPlan? {
        switch self {
        case .clblast: return ConvBackwardPlan.choose(s)
        case .clblastPerImage: return ConvBackwardPlan(weightSliceImages: 1, inputPerImage: true)
        case .clblastOneGemm: return ConvBackwardPlan(weightSliceImages: Int.max, inputPerImage: false)
        case .clblastSplitK: return ConvBackwardPlan(weightSliceImages: max(2, (s.n + 7) / 8), inputPerImage: false)
        default: return nil
        }
    }
}

/// Which way of a convolution a choice is for.
public enum ConvDirection: String, Sendable { case forward, backward }

/// Where a convolution's path came from.
public enum ConvChoiceSource: String, Sendable {
    /// An environment variable or property of `ConvWorkspace` forces it.
    case forced
    /// Timed on this device (now or by an earlier run) and stored.
    case timed
    /// Shipped with sge for the device's class (ShippedTuning.json).
    case shipped
    /// Not timed (one candidate, a small convolution, or timing off): the device kind's default.
    case fallback = "default"
}

/// The per-shape choice of `ConvPath` on one device ("conv find"). The first time a shape runs
/// in a direction, the candidates are timed on the real tensors into scratch outputs (one warm-up
/// run, then the median of `repeats`) and the fastest is stored in `ConvChoices` beside the
/// CLBlast tuning, so later runs reuse it. Stored choices win over shipped ones; shapes too small to
/// matter (< `minWork` multiply-adds) and devices with one candidate take the default path untimed.
/// Candidates: conv_cpu.cl's kernels on CPU drivers (CLBlast measured 1.5–5× slower there at every
/// measured shape, and timing it costs PoCL 25–90 s of compilation per GEMM program), CLBlast's
/// backward plans on GPUs, and Winograd on both for 3×3 stride-1 convolutions.
public final class ConvChooser: @unchecked Sendable {
    /// Whether missing shapes are timed (`SGE_CONV_FIND=0` turns it off: stored, shipped or default).
    public var find = ProcessInfo.processInfo.environment["SGE_CONV_FIND"].map { $0 != "0" } ?? true
    /// Whether the choices shipped for the device's class are used (`SGE_CONV_SHIPPED=0` turns them
    /// off, so a run times every shape afresh: how the shipped entries are made).
    public var useShipped = ProcessInfo.processInfo.environment["SGE_CONV_SHIPPED"].map { $0 != "0" } ?? true
    /// Shapes below this many multiply-adds per direction (N·K·C·KH·KW·OH·OW) are not timed.
    public var minWork = 1 << 24
    /// Timed runs per candidate (after one warm-up); the median counts.
    public var repeats = 3
    /// A later candidate must be this much faster than an earlier one to be chosen (0.05: 5%).
    public var tieMargin = 0.05
    /// Whether timed choices are written to the device's choice file.
    public var persist = true
    /// The choice file; nil: `ConvChoices.file(for:)` beside the CLBlast tuning (tests use a temporary one).
    public var file: URL?
    /// Replaces the device's candidate list (tests time CLBlast against conv_cpu.cl on PoCL).
    public var candidateOverride: [ConvPath]?

    private var records: [String: ConvChoiceRecord]?
    private var announced = Set<String>()
    private let lock = NSLock()

    public init() {}

    /// Forgets what this process has timed and loaded (the next lookup reads the file again).
    public func clear() {
        lock.lock()
        defer { lock.unlock() }
        records = nil
        announced.removeAll()
    }

    func record(_ key: String, info: DeviceInfo) -> ConvChoiceRecord? {
        lock.lock()
        defer { lock.unlock() }
        if records == nil {
            do { records = try ConvChoices.load(for: info, from: file)?.choices ?? [:] } catch {
                FileHandle.standardError.write(Data("sge: warning: ignoring stored convolution choices: \(error) (run `sge tune --reset`)\n".utf8))
                records = [:]
            }
        }
        return records?[key]
    }

    func store(_ key: String, _ direction: ConvDirection, _ path: ConvPath, timings: [String: Double], info: DeviceInfo) {
        lock.lock()
        defer { lock.unlock() }
        func updated(_ r: ConvChoiceRecord?) -> ConvChoiceRecord {
            var r = r ?? ConvChoiceRecord()
            if direction == .forward { r.forward = path.rawValue } else { r.backward = path.rawValue }
            r.timings = (r.timings ?? [:]).merging(timings) { $1 }
            return r
        }
        let current = records?[key]
        records?[key] = updated(current)
        guard persist else { return }
        do {
            // Merge with what other processes stored since this one read the file.
            var stored = (try? ConvChoices.load(for: info, from: file)) ?? ConvChoices(device: info.cacheIdentity)
            stored.choices[key] = updated(stored.choices[key])
            try stored.save(for: info, to: file)
        } catch {
            FileHandle.standardError.write(Data("sge: warning: cannot store the convolution choice for \(key): \(error)\n".utf8))
        }
    }

    /// SGE_VERBOSE, read once (every convolution call may announce).
    static let verbose = ProcessInfo.processInfo.environment["SGE_VERBOSE"].map { $0 != "0" && !$0.isEmpty } ?? false

    /// Prints `line` once per process under SGE_VERBOSE.
    func announce(_ id: @autoclosure () -> String, _ line: @autoclosure () -> String) {
        guard Self.verbose else { return }
        lock.lock()
        let first = announced.insert(id()).inserted
        lock.unlock()
        if first { FileHandle.standardError.write(Data("[sge] \(line())\n".utf8)) }
    }
}

extension OpenCLBackend {
    /// The choice-table key of a convolution shape.
    func convKey(_ s: Reference.Conv2dShape) -> String {
        ConvShapeKey.text(n: s.n, c: s.c, h: s.h, w: s.w, k: s.k, kh: s.kh, kw: s.kw, strideH: s.strideH, strideW: s.strideW,
                          padH: s.padH, padW: s.padW, dilationH: s.dilationH, dilationW: s.dilationW)
    }

    /// The paths this device may run `direction` of `s` with, its default first.
    func convCandidates(_ s: Reference.Conv2dShape, _ direction: ConvDirection) -> [ConvPath] {
        let backwardOnly: Set<ConvPath> = [.clblastPerImage, .clblastOneGemm, .clblastSplitK, .winogradImplicit, .winogradFull]
        if let list = convWorkspace.chooser.candidateOverride {
            // An override of backward-only paths leaves the forward its usual candidates.
            let usable = direction == .forward ? list.filter { !backwardOnly.contains($0) } : list
            if !usable.isEmpty { return usable }
        }
        let winograd = convWorkspace.winograd != false && Self.winogradApplies(s)
        if !device.info.isGPU {
            // Untimed, the first; timed, the first within `tieMargin` of the fastest. Winograd measured
            // faster on PoCL at every 3×3 stride-1 shape but one input channel (the stem); the
            // implicit GEMM has the fewest launches.
            var list: [ConvPath] = [.cpuImplicit, .cpuKernels]
            if convWorkspace.cpuImplicit == false { list = [.cpuKernels] }
            if winograd {
                var w: [ConvPath] = direction == .forward ? [.winograd] : list.contains(.cpuImplicit) ? [.winogradImplicit, .winograd] : [.winograd]
                // Winograd's own weight gradient (unless SGE_CONV_WINOGRAD_GW=0): it measured 1.5–3×
                // faster than the others' at 32 → 32 16×16 and 64 → 64 8×8 (batch 128) and matches the
                // reference in WinogradTests and, in a 2-rank run, after one step (DistributedTests).
                if direction == .backward, convWorkspace.winogradWeightGrad != false, winogradWeightGradApplies(s) {
                    w.insert(.winogradFull, at: 0)
                }
                list = s.c > 1 ? w + list : list + w
            }
            return list
        }
        var list: [ConvPath] = [.clblast]
        if direction == .backward {
            // The heuristic plan, then the other plans where they differ from it.
            for p in [ConvPath.clblastPerImage, .clblastOneGemm, .clblastSplitK]
            where (s.n > 2 || p != .clblastSplitK) && !list.contains(where: { $0.backwardPlan(s) == p.backwardPlan(s) }) {
                list.append(p)
            }
        }
        return winograd ? list + [.winograd] : list
    }

    /// The path forced by `ConvWorkspace`'s knobs (environment variables or tests), if any.
    private func forcedConvPath(_ s: Reference.Conv2dShape, _ direction: ConvDirection) -> ConvPath? {
        let cpuDriver = convWorkspace.cpuKernels ?? !device.info.isGPU
        if convWorkspace.winograd == true, Self.winogradApplies(s) {
            guard direction == .backward, cpuDriver else { return .winograd }
            if convWorkspace.winogradWeightGrad == true { return .winogradFull }
            return convWorkspace.cpuImplicit == true ? .winogradImplicit : .winograd
        }
        if cpuDriver, let implicit = convWorkspace.cpuImplicit { return implicit ? .cpuImplicit : .cpuKernels }
        if let cpu = convWorkspace.cpuKernels { return cpu ? .cpuImplicit : .clblast }
        if direction == .backward, convWorkspace.weightSliceImages != nil || convWorkspace.inputGradPerImage != nil {
            return cpuDriver ? .cpuImplicit : .clblast
        }
        return nil
    }

    /// The path `direction` of `s` runs with and where it came from, without timing anything.
    public func convChoice(_ s: Reference.Conv2dShape, _ direction: ConvDirection) -> (path: ConvPath, source: ConvChoiceSource) {
        let c = convChoiceUnforcedWeightGrad(s, direction)
        // `winogradWeightGrad == true`: Winograd's weight gradient wherever a backward runs Winograd.
        if direction == .backward, convWorkspace.winogradWeightGrad == true, [.winograd, .winogradImplicit].contains(c.path),
           !device.info.isGPU || OpenCLBackend.winogradFused == true {
            return (.winogradFull, .forced)
        }
        return c
    }

    private func convChoiceUnforcedWeightGrad(_ s: Reference.Conv2dShape, _ direction: ConvDirection) -> (path: ConvPath, source: ConvChoiceSource) {
        if let forced = forcedConvPath(s, direction) { return (forced, .forced) }
        let candidates = convCandidates(s, direction)
        func valid(_ name: String?) -> ConvPath? { name.flatMap(ConvPath.init(rawValue:)).flatMap { candidates.contains($0) ? $0 : nil } }
        let key = convKey(s)
        let chooser = convWorkspace.chooser
        if let r = chooser.record(key, info: device.info), let p = valid(direction == .forward ? r.forward : r.backward) { return (p, .timed) }
        if chooser.useShipped, let r = shippedTuning?.conv?[key], let p = valid(direction == .forward ? r.forward : r.backward) {
            return (p, .shipped)
        }
        return (candidates[0], .fallback)
    }

    /// The path to run `direction` of `s` with: `convChoice`, after timing the candidates when the
    /// shape has no choice yet, timing is on, there is more than one candidate and the convolution
    /// is large enough. `run(path, scratch)` enqueues the direction with a path into scratch outputs.
    func chooseConvPath(_ s: Reference.Conv2dShape, _ direction: ConvDirection,
                        run: (ConvPath) throws -> Void) throws -> ConvPath {
        let chooser = convWorkspace.chooser
        var (path, source) = convChoice(s, direction)
        let candidates = convCandidates(s, direction)
        let work = s.n * s.k * s.c * s.kh * s.kw * s.outH * s.outW
        // A knob that rules candidates out (SGE_CONV_WINOGRAD=0, ...) would store a choice made
        // without them: such runs take the default untimed.
        let ws = convWorkspace
        let restricted = ws.winograd != nil || ws.cpuImplicit != nil || ws.winogradWeightGrad != nil
        if source == .fallback, chooser.find, !restricted || chooser.candidateOverride != nil, candidates.count > 1,
           work >= chooser.minWork {
            let key = convKey(s)
            var times: [Double] = []
            for c in candidates {
                try run(c)  // warm-up: compiles the path's kernels
                try synchronize()
                var samples: [Double] = []
                for _ in 0..<max(chooser.repeats, 1) {
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    try run(c)
                    try synchronize()
                    samples.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
                }
                times.append(samples.sorted()[samples.count / 2])
            }
            // The first candidate (in the default order: fewest launches first) within `tieMargin`
            // of the fastest, so near-ties measured on a noisy machine do not flip between runs.
            let best = times.min()!
            path = candidates[times.firstIndex { $0 <= best * (1 + chooser.tieMargin) }!]
            source = .timed
            let timings = Dictionary(uniqueKeysWithValues: zip(candidates, times).map { ("\(direction.rawValue) \($0.rawValue)", $1) })
            chooser.store(key, direction, path, timings: timings, info: device.info)
            let list = zip(candidates, times).map { String(format: "%@ %.2f ms", $0.rawValue, $1) }.joined(separator: ", ")
            chooser.announce("\(key) \(direction.rawValue)", "conv \(key) \(direction.rawValue): \(path.rawValue) (timed now: \(list))")
        } else {
            chooser.announce("\(convKey(s)) \(direction.rawValue)", "conv \(convKey(s)) \(direction.rawValue): \(path.rawValue) (\(source.rawValue))")
        }
        return path
    }
}

extension OpenCLBackend {
    /// The path a convolution of input `x` and weight `weight` runs `direction` with and where it came
    /// from (no timing; `sge bench conv` prints it).
    public func convChoice(x: Tensor, weight: Tensor, params: Conv2dParams, _ direction: ConvDirection) throws
        -> (path: ConvPath, source: ConvChoiceSource) {
        convChoice(try conv2dShape(x, weight: weight, bias: nil, params: params, op: "conv2d"), direction)
    }
}
