import SGEKernels
import SGEOpenCL
import SGEReference
import SGETensor

/// What SGE backward needs from forward: small per-slab statistics, never a full-size map.
public struct SGESaved {
    /// Channel means m_k, shape [N, C].
    public let means: Tensor
    /// (μ, σ) of c over the H*W positions of each (sample, group) slab, shape [N, G, 2].
    public let stats: Tensor
    public init(means: Tensor, stats: Tensor) {
        self.means = means
        self.stats = stats
    }
}

/// Which kernel variant runs SGE on an OpenCL device.
public enum SGEPath: String, Sendable, CaseIterable {
    /// On GPUs the register variant where the slab fits it (``SGEPlan/registerFloats``), else the
    /// local-memory path where the slab fits local memory, else streaming; on CPU drivers the
    /// narrow variant, streaming.
    case automatic
    /// The slab (backward: x and grad_out) is loaded into local memory once per work-group.
    case local
    /// Every pass streams the slab from global memory (for slabs larger than local memory).
    case streaming
    /// The slab (backward: x and grad_out) is held in the work-items' registers: one read of each
    /// input and one write of the output (Kernels/sge_gpu_reg.cl). A wide variant only.
    case registers
}

/// Spatial Group-wise Enhance (maths in SGEReference/SGE.swift; kernels in Kernels/sge_*.cl).
public protocol SGEOps {
    /// out = x * sigmoid(w[g] t + b[g]) per (sample, group) slab; t is the normalised (or, with
    /// `normalize == false`, raw) similarity of each position to the group's channel means.
    func sgeForward(_ x: Tensor, weight: Tensor, bias: Tensor, groups: Int, normalize: Bool) throws -> (out: Tensor, saved: SGESaved)
    /// Returns grad_x; adds this call's gradients to `gradWeight` and `gradBias` ([G]).
    func sgeBackward(_ gradOut: Tensor, x: Tensor, weight: Tensor, bias: Tensor, groups: Int, normalize: Bool,
                     saved: SGESaved, gradWeight: Tensor, gradBias: Tensor) throws -> Tensor
    /// The gate map sigmoid(a), shape [N, G, H, W] (for visualisation).
    func sgeGate(_ x: Tensor, weight: Tensor, bias: Tensor, groups: Int, normalize: Bool) throws -> Tensor
}

/// Validated SGE sizes: K = C/G channels per group, M = H*W positions.
struct SGEDims {
    let n, c, h, w, g, k, m: Int
    var slabs: Int { n * g }
}

/// Checks SGE's inputs, naming the op and tensors in every error.
func sgeValidate(_ op: String, x: Tensor, weight: Tensor, bias: Tensor, groups: Int, normalize: Bool,
                 gradOut: Tensor? = nil, saved: SGESaved? = nil, gradWeight: Tensor? = nil, gradBias: Tensor? = nil) throws -> SGEDims {
    try x.shape.require(rank: 4, "\(op): \(x.label) (N, C, H, W)")
    let s = x.shape
    guard groups > 0 else { throw SGEError.invalidArgument("\(op): groups must be positive, got \(groups)") }
    guard s.c % groups == 0 else {
        throw SGEError.invalidArgument("\(op): \(x.label) has \(s.c) channels, not divisible by groups = \(groups)")
    }
    if normalize && s.h * s.w < 2 {
        throw SGEError.shape("\(op): \(x.label) \(s) has H*W = 1: the unbiased std over one position does not exist "
            + "(PyTorch gives NaN); use H*W >= 2 or normalize = false")
    }
    for (t, name) in [(weight, "weight"), (bias, "bias")] where t.shape != Shape([groups]) {
        throw SGEError.shape("\(op): \(name) \(t.label) has shape \(t.shape), expected [\(groups)] (one per group)")
    }
    if let gradOut, gradOut.shape != s {
        throw SGEError.shape("\(op): grad_out \(gradOut.label) has shape \(gradOut.shape) but x \(x.label) has shape \(s)")
    }
    if let saved {
        guard saved.means.shape == Shape([s.n, s.c]), saved.stats.shape == Shape([s.n, groups, 2]) else {
            throw SGEError.shape("\(op): saved state has means \(saved.means.shape) and stats \(saved.stats.shape), expected "
                + "[\(s.n), \(s.c)] and [\(s.n), \(groups), 2]: pass the SGESaved from the forward call on the same x")
        }
    }
    for (t, name) in [(gradWeight, "grad_weight"), (gradBias, "grad_bias")] {
        if let t, t.shape != Shape([groups]) {
            throw SGEError.shape("\(op): \(name) \(t.label) has shape \(t.shape), expected [\(groups)]")
        }
    }
    return SGEDims(n: s.n, c: s.c, h: s.h, w: s.w, g: groups, k: s.c / groups, m: s.h * s.w)
}

extension ReferenceBackend: SGEOps {
    public func sgeForward(_ x: Tensor, weight: Tensor, bias: Tensor, groups: Int, normalize: Bool) throws -> (out: Tensor, saved: SGESaved) {
        let d = try sgeValidate("sge forward", x: x, weight: weight, bias: bias, groups: groups, normalize: normalize)
        let r = Reference.sgeForward(try x.values(), shape: x.shape, weight: try weight.values(), bias: try bias.values(),
                                     groups: groups, normalize: normalize)
        var stats = [Float](repeating: 0, count: d.slabs * 2)
        for s in 0..<d.slabs {
            stats[2 * s] = r.mu[s]
            stats[2 * s + 1] = r.sigma[s]
        }
        let saved = SGESaved(means: try tensor(r.means, [d.n, d.c], label: "sge means"),
                             stats: try tensor(stats, [d.n, d.g, 2], label: "sge stats"))
        return (try tensor(r.out, x.shape, label: "sge out"), saved)
    }

    public func sgeBackward(_ gradOut: Tensor, x: Tensor, weight: Tensor, bias: Tensor, groups: Int, normalize: Bool,
                            saved: SGESaved, gradWeight: Tensor, gradBias: Tensor) throws -> Tensor {
        _ = try sgeValidate("sge backward", x: x, weight: weight, bias: bias, groups: groups, normalize: normalize,
                            gradOut: gradOut, saved: saved, gradWeight: gradWeight, gradBias: gradBias)
        let r = Reference.sgeBackward(gradOut: try gradOut.values(), x: try x.values(), shape: x.shape, weight: try weight.values(),
                                      bias: try bias.values(), groups: groups, normalize: normalize)
        try gradWeight.write(zip(try gradWeight.values(), r.gradWeight).map { $0 + $1 })
        try gradBias.write(zip(try gradBias.values(), r.gradBias).map { $0 + $1 })
        return try tensor(r.gradX, x.shape, label: "sge grad_x")
    }

    public func sgeGate(_ x: Tensor, weight: Tensor, bias: Tensor, groups: Int, normalize: Bool) throws -> Tensor {
        let d = try sgeValidate("sge gate", x: x, weight: weight, bias: bias, groups: groups, normalize: normalize)
        let r = Reference.sgeForward(try x.values(), shape: x.shape, weight: try weight.values(), bias: try bias.values(),
                                     groups: groups, normalize: normalize)
        return try tensor(r.gate, [d.n, d.g, d.h, d.w], label: "sge gate")
    }
}

/// A chosen SGE kernel configuration for one call.
struct SGEPlan {
    let workGroupSize: Int
    let slabLocal: Bool
    /// Software prefetch of the next slab and streaming stores of the outputs (narrow variant;
    /// CPU drivers only; where each applies is in Kernels/sge_*.cl).
    var cpuMemoryHints = false
    /// The register variant's compile-time shape, or nil for the other variants.
    var registers: SGERegisterShape? = nil

    /// Slab floats one work-item of the register variant may hold per input tensor: the backward
    /// holds two (x and grad_out), 64 floats plus its per-position values, which at 512 work-items
    /// stays inside a GPU compute unit's 64K registers.
    static let registerFloats = 32
    /// The register variant's widest work-group (see registerFloats).
    static let registerMaxWorkGroup = 512

    /// The register variant (sge_gpu_reg.cl), the wide GPU kernels for work-groups of more than one
    /// work-item, or the narrow CPU ones.
    var source: String {
        registers != nil ? KernelSource.sgeGPURegisters : workGroupSize > 1 ? KernelSource.sgeGPU : KernelSource.sgeCPU
    }
    var defines: [String: String] {
        var d = ["WG": "\(workGroupSize)", "SLAB_LOCAL": slabLocal ? "1" : "0", "SGE_PREFETCH": cpuMemoryHints ? "1" : "0",
                 "SGE_STREAM_STORES": cpuMemoryHints ? "1" : "0"]
        if let r = registers {
            d["KC"] = "\(r.kc)"
            d["PPT"] = "\(r.ppt)"
            d["RROWS"] = "\(r.rrows)"
        }
        return d
    }
    /// Floats of the reduction scratch (the last local argument of every SGE kernel).
    func scratchFloats(_ d: SGEDims) -> Int {
        if let r = registers { return r.rrows * workGroupSize + 1 }
        return 2 * max(d.k, workGroupSize)
    }
}

/// The register variant's compile-time shape: channels per group, positions per work-item
/// (ceil(M / WG)), and the rows of WG floats its reduction scratch holds.
struct SGERegisterShape: Equatable {
    let kc, ppt, rrows: Int
}

extension OpenCLBackend: SGEOps {
    /// The default work-group size for a slab of `k` channels x `m` positions. On CPU drivers such
    /// as PoCL: 1 (the narrow float8 variant, one work-item per slab), since a work-group runs as a
    /// loop on one core and `sge bench sge --sweep` measured the narrow variant 5-15x faster than
    /// any wide work-group there. On GPUs the wide variant: 256, or 128 for small slabs (forward
    /// K*M <= 4096, backward K*M <= 2048), where a narrower group leaves more groups per compute
    /// unit; the sweep on an NVIDIA H200 (README) measured 128 1.2-1.3x faster than 256 at
    /// 64x2048x7x7 G64 and forward 1.14x at 64x1024x14x14; from 256 up, times were flat.
    public func sgeDefaultWorkGroupSize(k: Int, m: Int, backward: Bool) -> Int {
        guard device.info.isGPU else { return 1 }
        return k * m <= (backward ? 2048 : 4096) ? 128 : 256
    }

    /// The register variant's widest work-group.
    public static var sgeRegisterMaxWorkGroup: Int { SGEPlan.registerMaxWorkGroup }

    /// The register variant for a slab, or nil where it does not apply: K channels x ceil(M / WG)
    /// positions must fit ``SGEPlan/registerFloats`` at a work-group of at most
    /// ``SGEPlan/registerMaxWorkGroup`` (and the device's maximum). Without `workGroupSize` the
    /// smallest power of two from 32 that fits: the most work-groups per compute unit.
    func sgeRegisterPlan(_ d: SGEDims, workGroupSize: Int?) -> SGEPlan? {
        let maxWG = min(SGEPlan.registerMaxWorkGroup, device.info.maxWorkGroupSize)
        let cap = SGEPlan.registerFloats
        guard d.k <= cap else { return nil }
        var wg = workGroupSize ?? 32
        if workGroupSize == nil {
            while wg < maxWG && d.k * ((d.m + wg - 1) / wg) > cap { wg *= 2 }
        }
        let ppt = (d.m + wg - 1) / wg
        guard wg >= 2, wg <= maxWG, d.k * ppt <= cap else { return nil }
        // Channel sums go RROWS rows of WG floats at a time: at most 4096 floats (16 KiB) of scratch.
        let rrows = max(2, min(d.k, 4096 / wg))
        let plan = SGEPlan(workGroupSize: wg, slabLocal: false, cpuMemoryHints: false,
                           registers: SGERegisterShape(kc: d.k, ppt: ppt, rrows: rrows))
        guard (plan.scratchFloats(d) + 2 * d.k) * 4 <= Int(device.info.localMemory) else { return nil }
        return plan
    }

    /// Local-memory floats a work-group needs (see the layout in Kernels/sge_*.cl).
    func sgeLocalFloats(_ d: SGEDims, backward: Bool, slabLocal: Bool, wg: Int) -> Int {
        let scratch = 2 * max(d.k, wg)
        if backward { return (slabLocal ? 2 * d.k * d.m : 2) + 2 * d.m + sgeBackwardKV(d, wg: wg) + scratch }
        return (slabLocal ? d.k * d.m : 1) + sgeForwardCFloats(d, wg: wg) + d.k + scratch
    }

    /// Forward's (and the gate's) `c` local array: c_i for the M positions, plus 16 floats in the
    /// narrow variant, whose streaming-store loop repeats c_0..c_15 there (Kernels/sge_*.cl).
    func sgeForwardCFloats(_ d: SGEDims, wg: Int) -> Int { d.m + (wg == 1 ? 16 : 0) }

    /// Backward's `kv` local array: m and R (K each); the narrow variant keeps m and the gate s (M).
    func sgeBackwardKV(_ d: SGEDims, wg: Int) -> Int { wg == 1 ? d.k + d.m : 2 * d.k }

    /// The plan for a call; `registersAllowed: false` leaves the register variant out (its kernel
    /// could not run at the work-group size it needs).
    func sgePlan(_ d: SGEDims, backward: Bool, path: SGEPath, workGroupSize: Int?, registersAllowed: Bool = true) throws -> SGEPlan {
        if let w = workGroupSize, w <= 0 || w & (w - 1) != 0 {
            throw SGEError.invalidArgument("sge: work-group size must be a power of two, got \(w)")
        }
        if registersAllowed && (path == .registers || (path == .automatic && device.info.isGPU && workGroupSize.map({ $0 > 1 }) ?? true)) {
            if let plan = sgeRegisterPlan(d, workGroupSize: workGroupSize) { return plan }
            if path == .registers {
                throw SGEError.invalidArgument("sge: the register path needs K x ceil(H*W / work-group) <= \(SGEPlan.registerFloats) "
                    + "floats per work-item at a work-group of at most \(min(SGEPlan.registerMaxWorkGroup, device.info.maxWorkGroupSize)); "
                    + "a slab of \(d.k) channels x \(d.m) positions"
                    + (workGroupSize.map { " at work-group \($0)" } ?? "") + " does not fit. Use --path automatic, local or streaming")
            }
        }
        let requested = workGroupSize ?? sgeDefaultWorkGroupSize(k: d.k, m: d.m, backward: backward)
        var wg = requested
        while wg > 1 && wg > device.info.maxWorkGroupSize { wg /= 2 }
        let limit = Int(device.info.localMemory)
        let fitsLocal = sgeLocalFloats(d, backward: backward, slabLocal: true, wg: wg) * 4 <= limit
        let slabLocal: Bool
        switch path {
        // The narrow variant streams: its one work-item's slab stays in that core's cache between
        // passes, so a local copy only adds traffic (measured ~2x slower on PoCL).
        case .automatic, .registers: slabLocal = fitsLocal && wg > 1   // .registers: only with registersAllowed false
        case .local:
            guard fitsLocal else {
                throw SGEError.invalidArgument("sge: the local-memory path needs \(sgeLocalFloats(d, backward: backward, slabLocal: true, wg: wg) * 4) bytes "
                    + "of local memory for a slab of \(d.k) channels x \(d.m) positions; \(device.info.name) has \(limit)")
            }
            slabLocal = true
        case .streaming: slabLocal = false
        }
        if !slabLocal {
            let need = sgeLocalFloats(d, backward: backward, slabLocal: false, wg: wg) * 4
            guard need <= limit else {
                throw SGEError.invalidArgument("sge: H*W = \(d.m) positions need \(need) bytes of local memory even on the "
                    + "streaming path; \(device.info.name) has \(limit). Use a smaller feature map or the reference backend")
            }
        }
        return SGEPlan(workGroupSize: wg, slabLocal: slabLocal, cpuMemoryHints: !device.info.isGPU)
    }

    /// The variant and work-group size a call with these arguments runs (bench reports it): the
    /// register, local or streaming path (narrow or wide by the work-group size).
    public func sgeResolvedPlan(shape: Shape, groups: Int, backward: Bool, path: SGEPath,
                                workGroupSize: Int?) throws -> (path: SGEPath, workGroupSize: Int) {
        guard shape.rank == 4, groups > 0, shape.c % groups == 0 else {
            throw SGEError.shape("sge: shape \(shape) with \(groups) groups is not valid for SGE")
        }
        let d = SGEDims(n: shape.n, c: shape.c, h: shape.h, w: shape.w, g: groups, k: shape.c / groups, m: shape.h * shape.w)
        var plan = try sgePlan(d, backward: backward, path: path, workGroupSize: workGroupSize)
        _ = try sgeKernel(backward ? "sge_backward" : "sge_forward", &plan, d, backward: backward, path: path)
        return (plan.registers != nil ? .registers : plan.slabLocal ? .local : .streaming, plan.workGroupSize)
    }

    /// Why the local-memory path cannot run SGE forward and backward on `shape` with `groups` groups
    /// and this work-group size on this device (its local memory is too small), or nil when it can.
    public func sgeLocalPathUnavailable(shape: Shape, groups: Int, workGroupSize: Int?) -> String? {
        guard shape.rank == 4, groups > 0, shape.c % groups == 0 else { return "shape \(shape) with \(groups) groups is not valid for SGE" }
        let d = SGEDims(n: shape.n, c: shape.c, h: shape.h, w: shape.w, g: groups, k: shape.c / groups, m: shape.h * shape.w)
        do {
            _ = try sgePlan(d, backward: false, path: .local, workGroupSize: workGroupSize)
            _ = try sgePlan(d, backward: true, path: .local, workGroupSize: workGroupSize)
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// The kernel for a plan, shrinking the work-group size if this kernel cannot run that wide.
    /// The register variant's kernel, which cannot run narrower with the same registers, gives way
    /// to the automatic choice without it (an error when the register path was asked for).
    func sgeKernel(_ name: String, _ plan: inout SGEPlan, _ d: SGEDims, backward: Bool, path: SGEPath) throws -> CLKernel {
        while true {
            let k = try kernel(name, plan.source, plan.defines)
            let max = k.maxWorkGroupSize
            if max == 0 || plan.workGroupSize <= max || plan.workGroupSize == 1 { return k }
            if plan.registers != nil {
                if path == .registers {
                    throw SGEError.invalidArgument("sge: \(name)'s register kernel runs at most \(max) work-items per group on "
                        + "\(device.info.name) (its registers), the register path needs \(plan.workGroupSize) for a slab of "
                        + "\(d.k) channels x \(d.m) positions. Use --path automatic, local or streaming")
                }
                plan = try sgePlan(d, backward: backward, path: path, workGroupSize: nil,
                                   registersAllowed: false)
                continue
            }
            plan = SGEPlan(workGroupSize: plan.workGroupSize / 2, slabLocal: plan.slabLocal, cpuMemoryHints: plan.cpuMemoryHints)
        }
    }

    public func sgeForward(_ x: Tensor, weight: Tensor, bias: Tensor, groups: Int, normalize: Bool) throws -> (out: Tensor, saved: SGESaved) {
        try sgeForward(x, weight: weight, bias: bias, groups: groups, normalize: normalize, path: .automatic, workGroupSize: nil)
    }

    /// `reuse` checked against `shape`, else a new device output.
    func reusable(_ reuse: Tensor?, _ shape: Shape, label: String, op: String) throws -> Tensor {
        guard let reuse else { return try output(shape, label: label) }
        guard reuse.shape == shape, reuse.context === device else {
            throw SGEError.shape("\(op): output to reuse \(reuse.label) has shape \(reuse.shape) (or another device), expected \(shape)")
        }
        return reuse
    }

    /// Forward with an explicit kernel path and work-group size (tests and benchmarks), writing into
    /// `reuse` when given (a tensor of x's shape): a freshly allocated output costs the page faults of
    /// its first touch, which at 25 MB take longer than the kernel itself on PoCL.
    public func sgeForward(_ x: Tensor, weight: Tensor, bias: Tensor, groups: Int, normalize: Bool,
                           path: SGEPath, workGroupSize: Int?, reuse: Tensor? = nil) throws -> (out: Tensor, saved: SGESaved) {
        let d = try sgeValidate("sge forward", x: x, weight: weight, bias: bias, groups: groups, normalize: normalize)
        var plan = try sgePlan(d, backward: false, path: path, workGroupSize: workGroupSize)
        let k = try sgeKernel("sge_forward", &plan, d, backward: false, path: path)
        let out = try reusable(reuse, x.shape, label: "sge out", op: "sge forward")
        let means = try output([d.n, d.c], label: "sge means")
        let stats = try output([d.n, d.g, 2], label: "sge stats")
        let wg = plan.workGroupSize
        try launch(k, [.buffer(x.deviceBuffer()), .buffer(out.deviceBufferForOverwrite()), .buffer(weight.deviceBuffer()),
                       .buffer(bias.deviceBuffer()), .buffer(means.deviceBufferForOverwrite()), .buffer(stats.deviceBufferForOverwrite()),
                       .int(Int32(d.g)), .int(Int32(d.k)), .int(Int32(d.m)), .int(normalize ? 1 : 0),
                       .local(plan.slabLocal ? d.k * d.m * 4 : 4), .local(plan.registers == nil ? sgeForwardCFloats(d, wg: wg) * 4 : 4),
                       .local(d.k * 4), .local(plan.scratchFloats(d) * 4)],
                   global: [d.slabs * wg], local: [wg])
        return (out, SGESaved(means: means, stats: stats))
    }

    public func sgeBackward(_ gradOut: Tensor, x: Tensor, weight: Tensor, bias: Tensor, groups: Int, normalize: Bool,
                            saved: SGESaved, gradWeight: Tensor, gradBias: Tensor) throws -> Tensor {
        try sgeBackward(gradOut, x: x, weight: weight, bias: bias, groups: groups, normalize: normalize, saved: saved,
                        gradWeight: gradWeight, gradBias: gradBias, path: .automatic, workGroupSize: nil).gradX
    }

    /// Backward with an explicit kernel path and work-group size (tests and benchmarks), writing
    /// grad_x into `reuse` when given; also returns the profiling events of its kernels, in order.
    public func sgeBackward(_ gradOut: Tensor, x: Tensor, weight: Tensor, bias: Tensor, groups: Int, normalize: Bool,
                            saved: SGESaved, gradWeight: Tensor, gradBias: Tensor, path: SGEPath,
                            workGroupSize: Int?, reuse: Tensor? = nil) throws -> (gradX: Tensor, events: [CLEvent]) {
        let d = try sgeValidate("sge backward", x: x, weight: weight, bias: bias, groups: groups, normalize: normalize,
                                gradOut: gradOut, saved: saved, gradWeight: gradWeight, gradBias: gradBias)
        var plan = try sgePlan(d, backward: true, path: path, workGroupSize: workGroupSize)
        let k = try sgeKernel("sge_backward", &plan, d, backward: true, path: path)
        let gx = try reusable(reuse, x.shape, label: "sge grad_x", op: "sge backward")
        let gsum = try output([d.n, d.g, 2], label: "sge slab sums")
        let wg = plan.workGroupSize
        let slab = plan.slabLocal ? d.k * d.m * 4 : 4
        let perPosition = plan.registers == nil ? d.m * 4 : 4   // c and ga (the register variant keeps them in registers)
        let main = try launch(k, [.buffer(x.deviceBuffer()), .buffer(gradOut.deviceBuffer()), .buffer(gx.deviceBufferForOverwrite()),
                       .buffer(weight.deviceBuffer()), .buffer(bias.deviceBuffer()), .buffer(saved.means.deviceBuffer()),
                       .buffer(saved.stats.deviceBuffer()), .buffer(gsum.deviceBufferForOverwrite()),
                       .int(Int32(d.g)), .int(Int32(d.k)), .int(Int32(d.m)), .int(normalize ? 1 : 0),
                       .local(slab), .local(slab), .local(perPosition), .local(perPosition), .local(sgeBackwardKV(d, wg: wg) * 4),
                       .local(plan.scratchFloats(d) * 4)],
                   global: [d.slabs * wg], local: [wg])
        let param = try launch(kernel("sge_param_grad", plan.source, plan.defines),
                   [.buffer(gsum.deviceBuffer()), .buffer(gradWeight.deviceBufferForUpdate()), .buffer(gradBias.deviceBufferForUpdate()),
                    .int(Int32(d.n)), .int(Int32(d.g))], count: d.g)
        return (gx, [main, param])
    }

    public func sgeGate(_ x: Tensor, weight: Tensor, bias: Tensor, groups: Int, normalize: Bool) throws -> Tensor {
        let d = try sgeValidate("sge gate", x: x, weight: weight, bias: bias, groups: groups, normalize: normalize)
        var plan = try sgePlan(d, backward: false, path: .automatic, workGroupSize: nil)
        let k = try sgeKernel("sge_gate", &plan, d, backward: false, path: .automatic)
        let gate = try output([d.n, d.g, d.h, d.w], label: "sge gate")
        let wg = plan.workGroupSize
        try launch(k, [.buffer(x.deviceBuffer()), .buffer(gate.deviceBufferForOverwrite()), .buffer(weight.deviceBuffer()),
                       .buffer(bias.deviceBuffer()), .int(Int32(d.g)), .int(Int32(d.k)), .int(Int32(d.m)), .int(normalize ? 1 : 0),
                       .local(plan.slabLocal ? d.k * d.m * 4 : 4), .local(plan.registers == nil ? sgeForwardCFloats(d, wg: wg) * 4 : 4),
                       .local(d.k * 4), .local(plan.scratchFloats(d) * 4)],
                   global: [d.slabs * wg], local: [wg])
        return gate
    }
}
