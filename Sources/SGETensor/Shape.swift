/// The dimensions of a dense row-major float32 tensor; 4-D shapes are NCHW.
public struct Shape: Hashable, Sendable, CustomStringConvertible, ExpressibleByArrayLiteral {
    public var dims: [Int]

    public init(_ dims: [Int]) { self.dims = dims }
    public init(arrayLiteral elements: Int...) { self.dims = elements }

    /// Number of elements (1 for a scalar shape `[]`).
    public var count: Int { dims.reduce(1, *) }
    public var rank: Int { dims.count }
    public subscript(i: Int) -> Int { dims[i] }

    /// N, C, H, W of a 4-D shape (call only on rank-4 shapes; check with `requireRank`).
    public var n: Int { dims[0] }
    public var c: Int { dims[1] }
    public var h: Int { dims[2] }
    public var w: Int { dims[3] }

    public var description: String { "[" + dims.map(String.init).joined(separator: ", ") + "]" }

    /// Throws `SGEError.shape` unless the shape has `rank` dimensions, all positive.
    public func require(rank: Int, _ what: String) throws {
        guard dims.count == rank else {
            throw SGEError.shape("\(what) must have \(rank) dimensions, got shape \(self)")
        }
        guard dims.allSatisfy({ $0 > 0 }) else {
            throw SGEError.shape("\(what) has an empty dimension: shape \(self)")
        }
    }
}

/// A float32 tensor in host memory: shape plus row-major values.
public struct HostTensor: Sendable, Equatable {
    public var shape: Shape
    public var data: [Float]

    public init(shape: Shape, data: [Float]) {
        precondition(shape.count == data.count, "HostTensor: \(data.count) values for shape \(shape)")
        self.shape = shape
        self.data = data
    }

    public init(zeros shape: Shape) { self.init(shape: shape, data: [Float](repeating: 0, count: shape.count)) }
    public init(repeating value: Float, _ shape: Shape) {
        self.init(shape: shape, data: [Float](repeating: value, count: shape.count))
    }
}
