import Foundation
import SGEKernels
import SGEOpenCL
import SGETensor

/// Runs ops as OpenCL kernels (and CLBlast routines) on one device's in-order profiling queue.
public final class OpenCLBackend: BackendBase {
    public let device: CLContext
    public var name: String { device.info.name }
    public var memory: DeviceMemory? {
        DeviceMemory(name: device.info.name, globalBytes: device.info.globalMemory, maxAllocationBytes: device.info.maxAllocation,
                     isGPU: device.info.isGPU)
    }
    public func makeTensor(_ values: [Float]?, _ shape: Shape) -> Tensor {
        values.map { Tensor($0, shape: shape, context: device) } ?? Tensor(zeros: shape, context: device)
    }
    public func makeOutput(_ shape: Shape) throws -> Tensor { try Tensor(uninitializedOnDevice: shape, context: device) }
    /// The profiling event of the most recent kernel each op enqueued (benchmarks read it).
    public var lastEvent: CLEvent?
    /// The shipped tuning class of the device (ShippedTuning.json), matched once.
    public private(set) lazy var shippedTuning: ShippedTuning.Entry? = ShippedTuning.embedded.match(device.info)
    /// Cached im2col workspace and convolution settings (Ops/Conv.swift).
    public let convWorkspace = ConvWorkspace()
    /// Which BatchNorm training kernels run; nil picks by device (GPUs `.gpu`, CPU drivers `.cpu`).
    /// Tests set it to run both kinds on PoCL.
    public var batchNormVariant: BatchNormVariant?
    /// Which max-pooling kernels run; nil picks by device (GPUs `.gpu`, CPU drivers `.cpu`). Tests set
    /// it to run both kinds on PoCL.
    public var poolVariant: PoolVariant?
    /// Work-items per row for the large-K cross-entropy kernel (rounded up to a power of two, one
    /// row per group); nil picks by device (Ops/Loss.swift). Tests set it to run the GPU mapping on PoCL.
    public var lossItemsPerRow: Int?
    /// The cross-entropy kernel's count of finished work-groups (Ops/Loss.swift): 0 between launches,
    /// the last group resets it.
    let lossDone: Tensor

    public init(_ info: DeviceInfo) throws {
        device = try CLContext.shared(for: info)
        lossDone = Tensor(zeros: [1], context: device)
        lossDone.label = "loss groups done"
    }

    public func synchronize() throws { try device.finish() }

    /// The memory plan of training steps on this backend's device (shared by its backends).
    public var stepMemory: StepMemory { StepMemory.of(device) }
    public func beginStep(_ key: String) {
        stepMemory.beginStep(key)
        endBoundStep()
        guard bindKernelsPerStep else { return }
        if stepKernels[key] == nil && stepKernels.count >= Self.boundStepKeys { stepKernels.removeAll() }
        (stepKey, stepSites, stepLaunch) = (key, stepKernels.removeValue(forKey: key) ?? [], 0)
    }
    public func endStep() {
        stepMemory.endStep()
        endBoundStep()
    }

    /// Keeps the ended step's launch sites under its key.
    private func endBoundStep() {
        if let key = stepKey { stepKernels[key] = stepSites }
        (stepKey, stepSites) = (nil, [])
    }

    /// Kernels bound once: inside a step (`beginStep`), launch number i of the step runs on its own
    /// kernel object, kept for that step key, so a step that repeats the last one (as a planned step
    /// does: same kernels, same buffers) sets no kernel argument again; CLKernel sets only the
    /// arguments that changed. `SGE_BIND_ONCE=0` turns it off (every launch site shares one object
    /// per kernel, as outside steps).
    public var bindKernelsPerStep = ProcessInfo.processInfo.environment["SGE_BIND_ONCE"].map { $0 != "0" } ?? true
    private var stepKey: String?
    /// The current step's launch sites (taken out of `stepKernels` for the step, so a launch does
    /// not hash the key).
    private var stepSites: [CLKernel] = []
    private var stepLaunch = 0
    private var stepKernels: [String: [CLKernel]] = [:]
    /// Step keys whose launch sites are kept (a training step, its last batch, evaluation, ...).
    static let boundStepKeys = 8

    /// The kernel object launch site `stepLaunch` of the current step uses for `kernel`.
    private func bound(_ kernel: CLKernel) throws -> CLKernel {
        guard stepKey != nil else { return kernel }
        let i = stepLaunch
        stepLaunch += 1
        if i < stepSites.count, stepSites[i].isSameKernel(as: kernel) { return stepSites[i] }
        guard i <= stepSites.count else { return kernel }   // an earlier site failed to clone
        let site = try kernel.clone()
        if i < stepSites.count { stepSites[i] = site } else { stepSites.append(site) }
        return site
    }

    /// The kernel `name` of `source`, compiled once per defines.
    func kernel(_ name: String, _ source: String, _ defines: [String: String] = [:]) throws -> CLKernel {
        try device.kernel(name, source: source, defines: defines)
    }

    /// Enqueues a 1-D kernel over `n` items with a driver-chosen work-group size.
    @discardableResult
    func launch(_ kernel: CLKernel, _ args: [CLKernel.Arg], count n: Int) throws -> CLEvent {
        let e = try bound(kernel).enqueue(args, global: [max(n, 1)])
        lastEvent = e
        return e
    }

    /// Enqueues with explicit global and local sizes (global rounded up to the local size).
    @discardableResult
    func launch(_ kernel: CLKernel, _ args: [CLKernel.Arg], global: [Int], local: [Int]?) throws -> CLEvent {
        let e = try bound(kernel).enqueue(args, global: global, local: local)
        lastEvent = e
        return e
    }
}
