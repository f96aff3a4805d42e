import SGEKernels
import SGEOpenCL
import SGEReference
import SGETensor

/// Optimiser steps (maths in SGEReference/Optim.swift).
public protocol OptimOps {
    /// One in-place SGD step, PyTorch's rule: d = g + wd·p; if momentum ≠ 0 { buf = firstStep ? d :
    /// momentum·buf + (1 - dampening)·d; d = nesterov ? d + momentum·buf : buf }; p -= lr·d.
    func sgdStep(_ param: Tensor, grad: Tensor, momentumBuffer: Tensor, lr: Float, momentum: Float, dampening: Float,
                 weightDecay: Float, nesterov: Bool, firstStep: Bool) throws
    /// `sgdStep` on every entry (each with its own weight decay), then zeroes each gradient: one
    /// launch per `SGDEntry.slotsPerLaunch` tensors on a device.
    func sgdStepMulti(_ entries: [SGDEntry], lr: Float, momentum: Float, dampening: Float, nesterov: Bool, firstStep: Bool) throws
    /// Packs the entries' tensors into flat buffers (see `SGDPack`) so `sgdStepPacked` updates them
    /// all in one launch; nil where packing gains nothing (the reference backend).
    func packSGD(_ entries: [SGDEntry]) throws -> SGDPack?
    /// `sgdStepMulti` on a pack's entries, with the same arithmetic per element.
    func sgdStepPacked(_ pack: SGDPack, lr: Float, momentum: Float, dampening: Float, nesterov: Bool, firstStep: Bool) throws
}

/// One tensor of a multi-tensor SGD step.
public struct SGDEntry {
    public var param, grad, momentumBuffer: Tensor
    public var weightDecay: Float
    public init(param: Tensor, grad: Tensor, momentumBuffer: Tensor, weightDecay: Float) {
        (self.param, self.grad, self.momentumBuffer, self.weightDecay) = (param, grad, momentumBuffer, weightDecay)
    }
    /// Tensors per `sgd_step_multi` launch (the kernel's slot count, Kernels/optim.cl).
    public static let slotsPerLaunch = 16
}

func checkSGD(_ param: Tensor, grad: Tensor, momentumBuffer: Tensor, lr: Float, momentum: Float, dampening: Float,
              weightDecay: Float, nesterov: Bool) throws {
    try requireSameShape(param, grad, op: "sgdStep")
    try requireSameShape(param, momentumBuffer, op: "sgdStep")
    guard lr >= 0, lr.isFinite else { throw SGEError.invalidArgument("sgdStep(\(param.label)): learning rate must be ≥ 0 and finite, got \(lr)") }
    guard momentum >= 0, momentum.isFinite else { throw SGEError.invalidArgument("sgdStep(\(param.label)): momentum must be ≥ 0, got \(momentum)") }
    guard weightDecay >= 0, weightDecay.isFinite else {
        throw SGEError.invalidArgument("sgdStep(\(param.label)): weight decay must be ≥ 0, got \(weightDecay)")
    }
    guard dampening.isFinite else { throw SGEError.invalidArgument("sgdStep(\(param.label)): dampening must be finite, got \(dampening)") }
    if nesterov, momentum <= 0 || dampening != 0 {
        throw SGEError.invalidArgument("sgdStep(\(param.label)): nesterov needs momentum > 0 and dampening 0, got momentum \(momentum), dampening \(dampening)")
    }
}

extension ReferenceBackend: OptimOps {
    public func sgdStep(_ param: Tensor, grad: Tensor, momentumBuffer: Tensor, lr: Float, momentum: Float, dampening: Float,
                        weightDecay: Float, nesterov: Bool, firstStep: Bool) throws {
        try checkSGD(param, grad: grad, momentumBuffer: momentumBuffer, lr: lr, momentum: momentum, dampening: dampening,
                     weightDecay: weightDecay, nesterov: nesterov)
        var p = try param.values(), b = try momentumBuffer.values()
        Reference.sgdStep(&p, grad: try grad.values(), momentumBuffer: &b, lr: lr, momentum: momentum, dampening: dampening,
                          weightDecay: weightDecay, nesterov: nesterov, firstStep: firstStep)
        try param.write(p)
        if momentum != 0 { try momentumBuffer.write(b) }
    }

    public func sgdStepMulti(_ entries: [SGDEntry], lr: Float, momentum: Float, dampening: Float, nesterov: Bool, firstStep: Bool) throws {
        for e in entries {
            try checkSGD(e.param, grad: e.grad, momentumBuffer: e.momentumBuffer, lr: lr, momentum: momentum, dampening: dampening,
                         weightDecay: e.weightDecay, nesterov: nesterov)
        }
        var params = try entries.map { try $0.param.values() }, grads = try entries.map { try $0.grad.values() }
        var buffers = try entries.map { try $0.momentumBuffer.values() }
        Reference.sgdStepMulti(&params, grads: &grads, momentumBuffers: &buffers, weightDecays: entries.map(\.weightDecay), lr: lr,
                               momentum: momentum, dampening: dampening, nesterov: nesterov, firstStep: firstStep)
        for (k, e) in entries.enumerated() {
            try e.param.write(params[k])
            try e.grad.write(grads[k])
            if momentum != 0 { try e.momentumBuffer.write(buffers[k]) }
        }
    }
}

extension OpenCLBackend: OptimOps {
    public func sgdStep(_ param: Tensor, grad: Tensor, momentumBuffer: Tensor, lr: Float, momentum: Float, dampening: Float,
                        weightDecay: Float, nesterov: Bool, firstStep: Bool) throws {
        try checkSGD(param, grad: grad, momentumBuffer: momentumBuffer, lr: lr, momentum: momentum, dampening: dampening,
                     weightDecay: weightDecay, nesterov: nesterov)
        // With momentum 0 the buffer is untouched, so its device copy need not become the only valid one.
        let buf = momentum != 0 ? try momentumBuffer.deviceBufferForUpdate() : try momentumBuffer.deviceBuffer()
        try launch(kernel("sgd_step", KernelSource.optim),
                   [.buffer(param.deviceBufferForUpdate()), .buffer(grad.deviceBuffer()), .buffer(buf), .int(Int32(param.count)),
                    .float(lr), .float(momentum), .float(dampening), .float(weightDecay), .int(nesterov ? 1 : 0), .int(firstStep ? 1 : 0)],
                   count: param.count)
    }

    public func sgdStepMulti(_ entries: [SGDEntry], lr: Float, momentum: Float, dampening: Float, nesterov: Bool, firstStep: Bool) throws {
        for e in entries {
            try checkSGD(e.param, grad: e.grad, momentumBuffer: e.momentumBuffer, lr: lr, momentum: momentum, dampening: dampening,
                         weightDecay: e.weightDecay, nesterov: nesterov)
        }
        var slots: [SGDSlot] = []
        for e in entries {
            let buf = momentum != 0 ? try e.momentumBuffer.deviceBufferForUpdate() : try e.momentumBuffer.deviceBuffer()
            slots.append((try e.param.deviceBufferForUpdate(), try e.grad.deviceBufferForUpdate(), buf, e.param.count, e.weightDecay))
        }
        try enqueueSGDMulti(slots, lr: lr, momentum: momentum, dampening: dampening, nesterov: nesterov, firstStep: firstStep)
    }

    /// sgd_step_multi over `slots`, `SGDEntry.slotsPerLaunch` to a launch.
    func enqueueSGDMulti(_ slots: [SGDSlot], lr: Float, momentum: Float, dampening: Float, nesterov: Bool, firstStep: Bool) throws {
        let kernel = try kernel("sgd_step_multi", KernelSource.optim)
        var start = 0
        while start < slots.count {
            let chunk = slots[start..<min(start + SGDEntry.slotsPerLaunch, slots.count)]
            var args: [CLKernel.Arg] = []
            for slot in chunk {
                args += [.buffer(slot.param), .buffer(slot.grad), .buffer(slot.momentum), .int(Int32(slot.count)), .float(slot.weightDecay)]
            }
            // Unused slots: zero elements, pointers to the first slot's buffers.
            for _ in chunk.count..<SGDEntry.slotsPerLaunch { args += [args[0], args[1], args[2], .int(0), .float(0)] }
            args += [.float(lr), .float(momentum), .float(dampening), .int(nesterov ? 1 : 0), .int(firstStep ? 1 : 0)]
            let total = chunk.reduce(0) { $0 + $1.count }
            guard total <= Int(Int32.max) else {
                throw SGEError.invalidArgument("sgdStepMulti: \(total) elements in one launch exceed the kernel's 32-bit index")
            }
            try launch(kernel, args, count: total)
            start += chunk.count
        }
    }
}

/// One sgd_step_multi slot: a parameter's device buffers, its element count and weight decay.
typealias SGDSlot = (param: CLBuffer, grad: CLBuffer, momentum: CLBuffer, count: Int, weightDecay: Float)
