import SGEReference
import SGETensor

/// The plain-Swift CPU backend. Tensors live on the host; every op calls `Reference`.
public final class ReferenceBackend: BackendBase {
    public init() {}
    public var name: String { "reference" }
    public var memory: DeviceMemory? { nil }
    public func makeTensor(_ values: [Float]?, _ shape: Shape) -> Tensor {
        values.map { Tensor($0, shape: shape, context: nil) } ?? Tensor(zeros: shape, context: nil)
    }
    public func makeOutput(_ shape: Shape) throws -> Tensor { Tensor(zeros: shape, context: nil) }
    public func synchronize() throws {}
}

extension Tensor {
    /// The host values of a reference-backend tensor (cheap copy-on-write array).
    func values() throws -> [Float] { try read() }
}
