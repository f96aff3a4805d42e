import SGEKernels
import SGEOpenCL
import SGEReference
import SGETensor

/// Max, average and global-average pooling over NCHW (maths in SGEReference/Pool.swift), PyTorch
/// semantics with ceil_mode = False. Argmax indices are stored as floats (in-plane index ih·W + iw).
public protocol PoolOps {
    /// Max pooling (padding acts as -inf; ties go to the first maximum). Returns the output and the argmax
    /// of each output element, both [N, C, OH, OW].
    func maxPoolForward(_ x: Tensor, kernel: Int, stride: Int, padding: Int) throws -> (out: Tensor, argmax: Tensor)
    /// Routes each output gradient to its argmax. The geometry is needed to gather without atomics.
    func maxPoolBackward(_ gradOut: Tensor, argmax: Tensor, inputShape: Shape, kernel: Int, stride: Int, padding: Int) throws -> Tensor
    /// Average pooling, count_include_pad = True (PyTorch's default).
    func avgPoolForward(_ x: Tensor, kernel: Int, stride: Int, padding: Int) throws -> Tensor
    func avgPoolBackward(_ gradOut: Tensor, inputShape: Shape, kernel: Int, stride: Int, padding: Int) throws -> Tensor
    /// [N, C, H, W] → [N, C] spatial means.
    func globalAvgPoolForward(_ x: Tensor) throws -> Tensor
    func globalAvgPoolBackward(_ gradOut: Tensor, inputShape: Shape) throws -> Tensor
}

/// The output shape of a pooling op, after checking the geometry (PyTorch's rules).
func poolOutputShape(_ input: Shape, kernel: Int, stride: Int, padding: Int, op: String, what: String) throws -> Shape {
    try input.require(rank: 4, "\(op): \(what)")
    guard kernel >= 1, stride >= 1, padding >= 0 else {
        throw SGEError.invalidArgument("\(op): kernel \(kernel), stride \(stride), padding \(padding): need kernel ≥ 1, stride ≥ 1, padding ≥ 0")
    }
    guard padding <= kernel / 2 else {
        throw SGEError.invalidArgument("\(op): padding \(padding) must be at most half the kernel size \(kernel)")
    }
    let oh = Reference.poolOutputSize(input.h, kernel: kernel, stride: stride, padding: padding)
    let ow = Reference.poolOutputSize(input.w, kernel: kernel, stride: stride, padding: padding)
    guard oh >= 1, ow >= 1 else {
        throw SGEError.shape("\(op): \(what) of shape \(input) with kernel \(kernel), stride \(stride), padding \(padding) gives an empty output \(oh)×\(ow)")
    }
    guard input.h * input.w < 1 << 24 else {
        throw SGEError.shape("\(op): \(what) planes of \(input.h)×\(input.w) are too large for float argmax indices (limit 2^24)")
    }
    return Shape([input.n, input.c, oh, ow])
}

/// Checks a pooling gradient against the output shape the geometry gives for `inputShape`.
func checkPoolBackward(_ gradOut: Tensor, inputShape: Shape, kernel: Int, stride: Int, padding: Int, op: String) throws -> Shape {
    let expected = try poolOutputShape(inputShape, kernel: kernel, stride: stride, padding: padding, op: op, what: "inputShape")
    guard gradOut.shape == expected else {
        throw SGEError.shape("\(op): \(gradOut.label) has shape \(gradOut.shape) but input \(inputShape) with kernel \(kernel), stride \(stride), padding \(padding) gives \(expected)")
    }
    return expected
}

func checkGlobalAvgPoolBackward(_ gradOut: Tensor, inputShape: Shape) throws {
    try inputShape.require(rank: 4, "globalAvgPoolBackward: inputShape")
    guard gradOut.shape == Shape([inputShape.n, inputShape.c]) else {
        throw SGEError.shape("globalAvgPoolBackward: \(gradOut.label) has shape \(gradOut.shape) but input \(inputShape) needs [\(inputShape.n), \(inputShape.c)]")
    }
}

extension ReferenceBackend: PoolOps {
    public func maxPoolForward(_ x: Tensor, kernel: Int, stride: Int, padding: Int) throws -> (out: Tensor, argmax: Tensor) {
        let os = try poolOutputShape(x.shape, kernel: kernel, stride: stride, padding: padding, op: "maxPoolForward", what: x.label)
        let r = Reference.maxPoolForward(try x.values(), shape: x.shape, kernel: kernel, stride: stride, padding: padding)
        return (try tensor(r.out, os, label: "maxpool"), try tensor(r.argmax, os, label: "maxpool argmax"))
    }

    public func maxPoolBackward(_ gradOut: Tensor, argmax: Tensor, inputShape: Shape, kernel: Int, stride: Int, padding: Int) throws -> Tensor {
        let os = try checkPoolBackward(gradOut, inputShape: inputShape, kernel: kernel, stride: stride, padding: padding, op: "maxPoolBackward")
        try requireSameShape(argmax, gradOut, op: "maxPoolBackward")
        let idx = try argmax.values()
        let planeSize = inputShape.h * inputShape.w
        if let bad = idx.firstIndex(where: { !($0 >= 0 && Int($0) < planeSize) }) {
            throw SGEError.invalidArgument("maxPoolBackward: \(argmax.label)[\(bad)] = \(idx[bad]) is not an index into a \(inputShape.h)×\(inputShape.w) plane")
        }
        return try tensor(Reference.maxPoolBackward(try gradOut.values(), argmax: idx, outputShape: os, inputShape: inputShape),
                          inputShape, label: "maxpool grad")
    }

    public func avgPoolForward(_ x: Tensor, kernel: Int, stride: Int, padding: Int) throws -> Tensor {
        let os = try poolOutputShape(x.shape, kernel: kernel, stride: stride, padding: padding, op: "avgPoolForward", what: x.label)
        return try tensor(Reference.avgPoolForward(try x.values(), shape: x.shape, kernel: kernel, stride: stride, padding: padding),
                          os, label: "avgpool")
    }

    public func avgPoolBackward(_ gradOut: Tensor, inputShape: Shape, kernel: Int, stride: Int, padding: Int) throws -> Tensor {
        _ = try checkPoolBackward(gradOut, inputShape: inputShape, kernel: kernel, stride: stride, padding: padding, op: "avgPoolBackward")
        return try tensor(Reference.avgPoolBackward(try gradOut.values(), inputShape: inputShape, kernel: kernel, stride: stride, padding: padding),
                          inputShape, label: "avgpool grad")
    }

    public func globalAvgPoolForward(_ x: Tensor) throws -> Tensor {
        try x.shape.require(rank: 4, "globalAvgPoolForward: \(x.label)")
        return try tensor(Reference.globalAvgPoolForward(try x.values(), shape: x.shape), [x.shape.n, x.shape.c], label: "global avgpool")
    }

    public func globalAvgPoolBackward(_ gradOut: Tensor, inputShape: Shape) throws -> Tensor {
        try checkGlobalAvgPoolBackward(gradOut, inputShape: inputShape)
        return try tensor(Reference.globalAvgPoolBackward(try gradOut.values(), inputShape: inputShape), inputShape, label: "global avgpool grad")
    }
}

extension OpenCLBackend: PoolOps {
    /// Enqueues a pool.cl kernel over a 3-D range (width, height, planes) of `shape` (the driver picks
    /// the work-group size).
    private func launchPlanes(_ kernel: CLKernel, _ args: [CLKernel.Arg], over shape: Shape) throws {
        try launch(kernel, args, global: [shape.w, shape.h, shape.n * shape.c], local: nil)
    }

    /// A pool.cl kernel compiled for one geometry.
    private func poolKernel(_ name: String, _ k: Int, _ s: Int, _ p: Int) throws -> CLKernel {
        try poolKernel(name, KernelSource.pool, k, s, p)
    }

    public func maxPoolForward(_ x: Tensor, kernel k: Int, stride: Int, padding: Int) throws -> (out: Tensor, argmax: Tensor) {
        let os = try poolOutputShape(x.shape, kernel: k, stride: stride, padding: padding, op: "maxPoolForward", what: x.label)
        let out = try output(os, label: "maxpool"), argmax = try output(os, label: "maxpool argmax")
        if effectivePoolVariant(kernel: k, width: x.shape.w) == .cpu {
            try maxPoolForwardCPU(x, out: out, argmax: argmax, kernel: k, stride: stride, padding: padding)
            return (out, argmax)
        }
        try launchPlanes(poolKernel("max_pool_forward", k, stride, padding),
                   [.buffer(x.deviceBuffer()), .buffer(out.deviceBufferForOverwrite()), .buffer(argmax.deviceBufferForOverwrite())]
                       + poolArgs(x.shape, os), over: os)
        return (out, argmax)
    }

    /// Argmax values are not range-checked here (that would read them back); an index the forward pass
    /// cannot write (outside its output's window) is ignored, never written through.
    public func maxPoolBackward(_ gradOut: Tensor, argmax: Tensor, inputShape: Shape, kernel k: Int, stride: Int, padding: Int) throws -> Tensor {
        let os = try checkPoolBackward(gradOut, inputShape: inputShape, kernel: k, stride: stride, padding: padding, op: "maxPoolBackward")
        try requireSameShape(argmax, gradOut, op: "maxPoolBackward")
        let gx = try output(inputShape, label: "maxpool grad")
        if effectivePoolVariant(kernel: k, width: inputShape.w) == .cpu {
            try maxPoolBackwardCPU(gradOut, argmax: argmax, gradX: gx, kernel: k, stride: stride, padding: padding)
            return gx
        }
        try launchPlanes(poolKernel("max_pool_backward", k, stride, padding),
                   [.buffer(gradOut.deviceBuffer()), .buffer(argmax.deviceBuffer()), .buffer(gx.deviceBufferForOverwrite())]
                       + poolArgs(inputShape, os), over: inputShape)
        return gx
    }

    public func avgPoolForward(_ x: Tensor, kernel k: Int, stride: Int, padding: Int) throws -> Tensor {
        let os = try poolOutputShape(x.shape, kernel: k, stride: stride, padding: padding, op: "avgPoolForward", what: x.label)
        let out = try output(os, label: "avgpool")
        try launchPlanes(poolKernel("avg_pool_forward", k, stride, padding),
                   [.buffer(x.deviceBuffer()), .buffer(out.deviceBufferForOverwrite())] + poolArgs(x.shape, os), over: os)
        return out
    }

    public func avgPoolBackward(_ gradOut: Tensor, inputShape: Shape, kernel k: Int, stride: Int, padding: Int) throws -> Tensor {
        let os = try checkPoolBackward(gradOut, inputShape: inputShape, kernel: k, stride: stride, padding: padding, op: "avgPoolBackward")
        let gx = try output(inputShape, label: "avgpool grad")
        try launchPlanes(poolKernel("avg_pool_backward", k, stride, padding),
                   [.buffer(gradOut.deviceBuffer()), .buffer(gx.deviceBufferForOverwrite())] + poolArgs(inputShape, os), over: inputShape)
        return gx
    }

    public func globalAvgPoolForward(_ x: Tensor) throws -> Tensor {
        try x.shape.require(rank: 4, "globalAvgPoolForward: \(x.label)")
        let planes = x.shape.n * x.shape.c
        let out = try output([x.shape.n, x.shape.c], label: "global avgpool")
        try launch(kernel("global_avg_pool_forward", KernelSource.pool),
                   [.buffer(x.deviceBuffer()), .buffer(out.deviceBufferForOverwrite()), .int(Int32(planes)), .int(Int32(x.shape.h * x.shape.w))],
                   count: planes)
        return out
    }

    public func globalAvgPoolBackward(_ gradOut: Tensor, inputShape: Shape) throws -> Tensor {
        try checkGlobalAvgPoolBackward(gradOut, inputShape: inputShape)
        let gx = try output(inputShape, label: "global avgpool grad")
        try launch(kernel("global_avg_pool_backward", KernelSource.pool),
                   [.buffer(gradOut.deviceBuffer()), .buffer(gx.deviceBufferForOverwrite()),
                    .int(Int32(inputShape.n * inputShape.c)), .int(Int32(inputShape.h * inputShape.w))],
                   count: inputShape.count)
        return gx
    }
}
