/// Elementwise ops (kernels in `Kernels/elementwise.cl`).
///
///     fill:          x_i = v
///     scale:         x_i = alpha * x_i
///     axpby:         y_i = alpha * x_i + beta * y_i
///     add:           out_i = a_i + b_i
///     relu_forward:  out_i = max(x_i, 0)
///     relu_backward: gx_i = go_i if out_i > 0 else 0   (PyTorch: the gradient at 0 is 0)
extension Reference {
    public static func fill(count: Int, value: Float) -> [Float] { [Float](repeating: value, count: count) }

    public static func scale(_ x: [Float], alpha: Float) -> [Float] { x.map { Float(Double(alpha) * Double($0)) } }

    public static func axpby(alpha: Float, x: [Float], beta: Float, y: [Float]) -> [Float] {
        precondition(x.count == y.count)
        return (0..<x.count).map { Float(Double(alpha) * Double(x[$0]) + Double(beta) * Double(y[$0])) }
    }

    public static func add(_ a: [Float], _ b: [Float]) -> [Float] {
        precondition(a.count == b.count)
        return (0..<a.count).map { a[$0] + b[$0] }
    }

    public static func reluForward(_ x: [Float]) -> [Float] { x.map { max($0, 0) } }
    /// max(a + b, 0): a residual block's add and final ReLU in one pass.
    public static func addReLU(_ a: [Float], _ b: [Float]) -> [Float] { reluForward(add(a, b)) }

    public static func reluBackward(out: [Float], gradOut: [Float]) -> [Float] {
        precondition(out.count == gradOut.count)
        return (0..<out.count).map { out[$0] > 0 ? gradOut[$0] : 0 }
    }
}
