import SGEKernels
import SGEOpenCL
import SGETensor

/// Parameters, gradients and momentum buffers of an optimizer packed into three flat device buffers:
/// each tensor becomes a region (a sub-buffer, its offset aligned for the device) of the flat buffer
/// of its kind, in one order for all three. Tensors keep their shapes, names and values, so layers,
/// checkpoints and all-reduces use them as before; one `sgd_step_multi` launch with one slot per
/// weight-decay group then updates every parameter. Regions are grouped by weight decay (in order of
/// first appearance); the alignment gaps hold zeros, which an SGD step leaves zero.
public final class SGDPack {
    /// The packed entries, in the caller's order.
    public let entries: [SGDEntry]
    /// Per weight-decay group: the region of each flat buffer covering the group (param, grad, momentum).
    let groups: [(weightDecay: Float, count: Int, param: CLBuffer, grad: CLBuffer, momentum: CLBuffer)]

    init(entries: [SGDEntry], groups: [(weightDecay: Float, count: Int, param: CLBuffer, grad: CLBuffer, momentum: CLBuffer)]) {
        (self.entries, self.groups) = (entries, groups)
    }

    /// Whether `entries` are the packed tensors (the same objects, in order) with the same weight decays.
    public func matches(_ entries: [SGDEntry]) -> Bool {
        entries.count == self.entries.count && zip(entries, self.entries).allSatisfy { a, b in
            a.param === b.param && a.grad === b.grad && a.momentumBuffer === b.momentumBuffer && a.weightDecay == b.weightDecay
        }
    }

    /// Launches per step.
    public var launches: Int { (groups.count + SGDEntry.slotsPerLaunch - 1) / SGDEntry.slotsPerLaunch }
}

extension ReferenceBackend {
    /// Host arrays gain nothing from packing.
    public func packSGD(_ entries: [SGDEntry]) throws -> SGDPack? { nil }

    public func sgdStepPacked(_ pack: SGDPack, lr: Float, momentum: Float, dampening: Float, nesterov: Bool, firstStep: Bool) throws {
        try sgdStepMulti(pack.entries, lr: lr, momentum: momentum, dampening: dampening, nesterov: nesterov, firstStep: firstStep)
    }
}

extension OpenCLBackend {
    public func packSGD(_ entries: [SGDEntry]) throws -> SGDPack? {
        // Nothing to gain without tensors, and an empty region cannot be a sub-buffer.
        guard !entries.isEmpty, entries.allSatisfy({ $0.param.count > 0 }) else { return nil }
        for e in entries {
            try requireSameShape(e.param, e.grad, op: "packSGD")
            try requireSameShape(e.param, e.momentumBuffer, op: "packSGD")
        }
        let align = try device.subBufferAlignment() / 4
        // Regions grouped by weight decay, each starting at an aligned offset (in floats).
        var decays: [Float] = []
        for e in entries where !decays.contains(e.weightDecay) { decays.append(e.weightDecay) }
        var offsets = [Int](repeating: 0, count: entries.count)
        var spans: [(weightDecay: Float, start: Int, end: Int)] = []
        var total = 0
        for wd in decays {
            total = (total + align - 1) / align * align
            let start = total
            for (i, e) in entries.enumerated() where e.weightDecay == wd {
                total = (total + align - 1) / align * align
                offsets[i] = total
                total += e.param.count
            }
            spans.append((wd, start, total))
        }
        guard total <= Int(Int32.max) else {
            throw SGEError.invalidArgument("packSGD: \(total) parameters exceed the SGD kernel's 32-bit index")
        }
        // Zero-filled flat buffers: a zero tensor's first upload.
        let flats = try (0..<3).map { _ in try Tensor(zeros: [total], context: device).deviceBufferForUpdate() }
        for (i, e) in entries.enumerated() {
            for (k, t) in [e.param, e.grad, e.momentumBuffer].enumerated() {
                try t.adoptDeviceStorage(try device.subBuffer(of: flats[k], offset: offsets[i] * 4, bytes: t.count * 4))
            }
        }
        let groups = try spans.map { span in
            let views = try flats.map { try device.subBuffer(of: $0, offset: span.start * 4, bytes: max(span.end - span.start, 1) * 4) }
            return (weightDecay: span.weightDecay, count: span.end - span.start, param: views[0], grad: views[1], momentum: views[2])
        }
        return SGDPack(entries: entries, groups: groups)
    }

    /// `sgdStepMulti` on the packed entries: one launch (per `SGDEntry.slotsPerLaunch` weight-decay groups).
    public func sgdStepPacked(_ pack: SGDPack, lr: Float, momentum: Float, dampening: Float, nesterov: Bool, firstStep: Bool) throws {
        for e in pack.entries {
            try checkSGD(e.param, grad: e.grad, momentumBuffer: e.momentumBuffer, lr: lr, momentum: momentum, dampening: dampening,
                         weightDecay: e.weightDecay, nesterov: nesterov)
            // Current values into the regions (uploads only where the host copy is newer, e.g. after
            // a checkpoint load); afterwards the device copies are the valid ones.
            _ = try e.param.deviceBufferForUpdate()
            _ = try e.grad.deviceBufferForUpdate()
            _ = momentum != 0 ? try e.momentumBuffer.deviceBufferForUpdate() : try e.momentumBuffer.deviceBuffer()
        }
        let slots = pack.groups.map { g -> SGDSlot in (g.param, g.grad, g.momentum, g.count, g.weightDecay) }
        try enqueueSGDMulti(slots, lr: lr, momentum: momentum, dampening: dampening, nesterov: nesterov, firstStep: firstStep)
    }
}
