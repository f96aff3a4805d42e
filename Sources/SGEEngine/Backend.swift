import SGETensor

/// A compute backend: where tensors live and how ops run. Two implementations: `OpenCLBackend`
/// (any OpenCL device) and `ReferenceBackend` (plain Swift, Double accumulation). Op families are
/// protocols declared beside their implementations in `Ops/`.
public protocol BackendBase: AnyObject {
    /// Human-readable name ("reference" or the device's name).
    var name: String { get }
    /// The device's memory (nil for the reference backend, which lives in host memory).
    var memory: DeviceMemory? { get }
    /// Waits for all enqueued work.
    func synchronize() throws
    /// A new tensor of `shape` holding `values` (count checked by the caller), where this backend
    /// keeps its tensors; `values` nil: zeros.
    func makeTensor(_ values: [Float]?, _ shape: Shape) -> Tensor
    /// A tensor a kernel will overwrite entirely (device-only for OpenCL, zeros for the reference).
    func makeOutput(_ shape: Shape) throws -> Tensor
    /// Starts a training step whose device buffers follow the memory plan of `key` (model and
    /// batch shape; see `StepMemory`); the reference backend ignores it.
    func beginStep(_ key: String)
    /// Ends the step `beginStep` started (a first recording may become a plan here).
    func endStep()
}

/// What a backend says about its memory, for the memory check before training (no OpenCL type, so
/// code above the engine needs none).
public struct DeviceMemory: Sendable, Equatable {
    public var name: String
    /// Global memory and the largest single allocation, in bytes.
    public var globalBytes: UInt64
    public var maxAllocationBytes: UInt64
    /// A GPU has its own memory; other devices (CPU drivers) allocate from host memory.
    public var isGPU: Bool
    public init(name: String, globalBytes: UInt64, maxAllocationBytes: UInt64, isGPU: Bool) {
        (self.name, self.globalBytes, self.maxAllocationBytes, self.isGPU) = (name, globalBytes, maxAllocationBytes, isGPU)
    }
}

extension BackendBase {
    public func beginStep(_ key: String) {}
    public func endStep() {}

    /// A zero tensor of `shape` on this backend.
    public func zeros(_ shape: Shape, label: String = "tensor") -> Tensor {
        let t = makeTensor(nil, shape)
        t.label = label
        return t
    }

    /// A tensor on this backend holding `values`.
    public func tensor(_ values: [Float], _ shape: Shape, label: String = "tensor") throws -> Tensor {
        guard values.count == shape.count else {
            throw SGEError.shape("\(label): \(values.count) values for shape \(shape)")
        }
        let t = makeTensor(values, shape)
        t.label = label
        return t
    }

    public func tensor(_ host: HostTensor, label: String = "tensor") throws -> Tensor {
        try tensor(host.data, host.shape, label: label)
    }

    /// A tensor a kernel will overwrite entirely (device-only for OpenCL, zeros for the reference).
    public func output(_ shape: Shape, label: String = "output") throws -> Tensor {
        let t = try makeOutput(shape)
        t.label = label
        return t
    }
}

/// Every op a training step needs.
public typealias Backend = BackendBase & ElementwiseOps & SGEOps & ConvOps & BatchNormOps & PoolOps & LossOps & OptimOps

/// Checks that two tensors have the same shape, naming the op and both tensors.
func requireSameShape(_ a: Tensor, _ b: Tensor, op: String) throws {
    guard a.shape == b.shape else {
        throw SGEError.shape("\(op): \(a.label) has shape \(a.shape) but \(b.label) has shape \(b.shape)")
    }
}
