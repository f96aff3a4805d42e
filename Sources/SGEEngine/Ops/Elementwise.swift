import SGEKernels
import SGEOpenCL
import SGEReference
import SGETensor

/// Elementwise ops (see `Reference` in SGEReference/Elementwise.swift for the maths).
public protocol ElementwiseOps {
    /// x = value everywhere.
    func fill(_ x: Tensor, _ value: Float) throws
    /// x = alpha * x.
    func scale(_ x: Tensor, _ alpha: Float) throws
    /// y = alpha * x + beta * y.
    func axpby(alpha: Float, _ x: Tensor, beta: Float, _ y: Tensor) throws
    /// a + b, a new tensor.
    func add(_ a: Tensor, _ b: Tensor) throws -> Tensor
    /// dst = src.
    func copy(_ src: Tensor, to dst: Tensor) throws
    func reluForward(_ x: Tensor) throws -> Tensor
    /// max(a + b, 0), a new tensor (a residual block's add and final ReLU in one pass).
    func addReLU(_ a: Tensor, _ b: Tensor) throws -> Tensor
    func reluBackward(out: Tensor, gradOut: Tensor) throws -> Tensor
}

extension ReferenceBackend: ElementwiseOps {
    public func fill(_ x: Tensor, _ value: Float) throws { try x.write(Reference.fill(count: x.count, value: value)) }
    public func scale(_ x: Tensor, _ alpha: Float) throws { try x.write(Reference.scale(x.values(), alpha: alpha)) }
    public func axpby(alpha: Float, _ x: Tensor, beta: Float, _ y: Tensor) throws {
        try requireSameShape(x, y, op: "axpby")
        try y.write(Reference.axpby(alpha: alpha, x: x.values(), beta: beta, y: y.values()))
    }
    public func add(_ a: Tensor, _ b: Tensor) throws -> Tensor {
        try requireSameShape(a, b, op: "add")
        return try tensor(Reference.add(a.values(), b.values()), a.shape, label: "add")
    }
    public func copy(_ src: Tensor, to dst: Tensor) throws {
        try requireSameShape(src, dst, op: "copy")
        try dst.write(src.values())
    }
    public func reluForward(_ x: Tensor) throws -> Tensor {
        try tensor(Reference.reluForward(x.values()), x.shape, label: "relu")
    }
    public func addReLU(_ a: Tensor, _ b: Tensor) throws -> Tensor {
        try requireSameShape(a, b, op: "addReLU")
        return try tensor(Reference.addReLU(a.values(), b.values()), a.shape, label: "add+relu")
    }
    public func reluBackward(out: Tensor, gradOut: Tensor) throws -> Tensor {
        try requireSameShape(out, gradOut, op: "relu backward")
        return try tensor(Reference.reluBackward(out: out.values(), gradOut: gradOut.values()), out.shape, label: "relu grad")
    }
}

extension OpenCLBackend: ElementwiseOps {
    public func fill(_ x: Tensor, _ value: Float) throws {
        try launch(kernel("fill", KernelSource.elementwise), [.buffer(x.deviceBufferForOverwrite()), .int(Int32(x.count)), .float(value)], count: x.count)
    }
    public func scale(_ x: Tensor, _ alpha: Float) throws {
        try launch(kernel("scale", KernelSource.elementwise), [.buffer(x.deviceBufferForUpdate()), .int(Int32(x.count)), .float(alpha)], count: x.count)
    }
    public func axpby(alpha: Float, _ x: Tensor, beta: Float, _ y: Tensor) throws {
        try requireSameShape(x, y, op: "axpby")
        try launch(kernel("axpby", KernelSource.elementwise),
                   [.buffer(x.deviceBuffer()), .buffer(y.deviceBufferForUpdate()), .int(Int32(x.count)), .float(alpha), .float(beta)], count: x.count)
    }
    public func add(_ a: Tensor, _ b: Tensor) throws -> Tensor { try binary("add", a, b, op: "add", label: "add") }
    public func addReLU(_ a: Tensor, _ b: Tensor) throws -> Tensor { try binary("add_relu", a, b, op: "addReLU", label: "add+relu") }

    /// out = f(a, b) elementwise by the elementwise.cl kernel `name`.
    private func binary(_ name: String, _ a: Tensor, _ b: Tensor, op: String, label: String) throws -> Tensor {
        try requireSameShape(a, b, op: op)
        let out = try output(a.shape, label: label)
        try launch(kernel(name, KernelSource.elementwise),
                   [.buffer(a.deviceBuffer()), .buffer(b.deviceBuffer()), .buffer(out.deviceBufferForOverwrite()), .int(Int32(a.count))], count: a.count)
        return out
    }
    public func copy(_ src: Tensor, to dst: Tensor) throws {
        try requireSameShape(src, dst, op: "copy")
        lastEvent = try device.copy(src.deviceBuffer(), to: dst.deviceBufferForOverwrite(), bytes: src.count * 4)
    }
    public func reluForward(_ x: Tensor) throws -> Tensor {
        let out = try output(x.shape, label: "relu")
        try launch(kernel("relu_forward", KernelSource.elementwise),
                   [.buffer(x.deviceBuffer()), .buffer(out.deviceBufferForOverwrite()), .int(Int32(x.count))], count: x.count)
        return out
    }
    public func reluBackward(out: Tensor, gradOut: Tensor) throws -> Tensor {
        try requireSameShape(out, gradOut, op: "relu backward")
        let gx = try output(out.shape, label: "relu grad")
        try launch(kernel("relu_backward", KernelSource.elementwise),
                   [.buffer(out.deviceBuffer()), .buffer(gradOut.deviceBuffer()), .buffer(gx.deviceBufferForOverwrite()), .int(Int32(out.count))], count: out.count)
        return gx
    }
}
