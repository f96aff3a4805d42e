import SGEOpenCL
import SGETensor

/// A compute backend: where tensors live and how ops run. Two implementations: `OpenCLBackend`
/// (any OpenCL device) and `ReferenceBackend` (plain Swift, Double accumulation). Op families are
/// protocols declared beside their implementations in `Ops/`.
public protocol BackendBase: AnyObject {
    /// Human-readable name ("reference" or the device's name).
    var name: String { get }
    /// The device context (nil for the reference backend).
    var context: CLContext? { get }
    /// Waits for all enqueued work.
    func synchronize() throws
}

extension BackendBase {
    /// A zero tensor of `shape` on this backend.
    public func zeros(_ shape: Shape, label: String = "tensor") -> Tensor {
        let t = Tensor(zeros: shape, context: context)
        t.label = label
        return t
    }

    /// A tensor on this backend holding `values`.
    public func tensor(_ values: [Float], _ shape: Shape, label: String = "tensor") throws -> Tensor {
        guard values.count == shape.count else {
            throw SGEError.shape("\(label): \(values.count) values for shape \(shape)")
        }
        let t = Tensor(values, shape: shape, context: context)
        t.label = label
        return t
    }

    public func tensor(_ host: HostTensor, label: String = "tensor") throws -> Tensor {
        try tensor(host.data, host.shape, label: label)
    }

    /// A tensor a kernel will overwrite entirely (device-only for OpenCL, zeros for the reference).
    public func output(_ shape: Shape, label: String = "output") throws -> Tensor {
        if let context {
            let t = try Tensor(uninitializedOnDevice: shape, context: context)
            t.label = label
            return t
        }
        return zeros(shape, label: label)
    }
}

/// Every op a training step needs.
public typealias Backend = BackendBase & ElementwiseOps & BatchNormOps & PoolOps & LossOps & OptimOps

/// Checks that two tensors have the same shape, naming the op and both tensors.
func requireSameShape(_ a: Tensor, _ b: Tensor, op: String) throws {
    guard a.shape == b.shape else {
        throw SGEError.shape("\(op): \(a.label) has shape \(a.shape) but \(b.label) has shape \(b.shape)")
    }
}
