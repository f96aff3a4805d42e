import Foundation
import SGENet

/// One GEMM as sge issues it (row-major): C = op(A)·op(B) + beta·C with op(A) m×k, op(B) k×n.
/// `batch` > 1 is one strided-batched call with A shared (stride 0, as convolutions share the
/// weights); `calls` > 1 is that many back-to-back calls on consecutive B/C (or A/B) slices.
public struct GemmShape: Codable, Hashable, Sendable, CustomStringConvertible {
    public var name: String
    public var transA: Bool, transB: Bool
    public var m: Int, n: Int, k: Int
    public var batch: Int
    public var calls: Int
    public var beta: Float
    /// How often the shape occurs per training step (weight in the tuning objective).
    public var count: Int

    public init(_ name: String, transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                batch: Int = 1, calls: Int = 1, beta: Float = 0, count: Int = 1) {
        (self.name, self.transA, self.transB, self.m, self.n, self.k) = (name, transA, transB, m, n, k)
        (self.batch, self.calls, self.beta, self.count) = (batch, calls, beta, count)
    }

    /// Floating-point operations of one timed run.
    public var flops: Double { 2 * Double(m) * Double(n) * Double(k) * Double(batch * calls) }
    /// m·n·k of one GEMM: what CLBlast compares against XGEMM_MIN_INDIRECT_SIZE³.
    public var mnk: Int { m * n * k }
    public var description: String {
        "\(name) \(transA ? "T" : "N")\(transB ? "T" : "N") \(m)×\(n)×\(k)" + (batch > 1 ? " batch \(batch)" : "") + (calls > 1 ? " ×\(calls)" : "")
    }

    /// The classic square benchmark.
    public static let square512 = GemmShape("square", m: 512, n: 512, k: 512)
}

extension GemmShape {
    /// The GEMMs a training step of `config` on images of `height`×`width` issues for `images`
    /// images, one entry per distinct GEMM with `count` = how often it occurs: per convolution
    /// (stem, every block's convs, downsamples) the forward W·col (strided-batched over images),
    /// the grad weight go·colᵀ (one accumulating GEMM per image) and the grad input Wᵀ·go
    /// (strided-batched; not for the stem, whose input needs no gradient).
    public static func training(_ config: ResNetConfig, height: Int, width: Int, images: Int) -> [GemmShape] {
        var convs: [(name: String, cin: Int, cout: Int, kernel: Int, stride: Int, h: Int, w: Int)] = []
        var (h, w) = (height, width)
        func out(_ size: Int, _ k: Int, _ s: Int, _ p: Int) -> Int { (size + 2 * p - k) / s + 1 }
        let stemKernel = config.stem == .imagenet ? 7 : 3, stemStride = config.stem == .imagenet ? 2 : 1
        convs.append(("stem", config.inputChannels, config.stemWidth, stemKernel, stemStride, h, w))
        (h, w) = (out(h, stemKernel, stemStride, stemKernel / 2), out(w, stemKernel, stemStride, stemKernel / 2))
        if config.stem == .imagenet { (h, w) = (out(h, 3, 2, 1), out(w, 3, 2, 1)) }
        var cin = config.stemWidth
        for (i, width) in config.widths.enumerated() {
            let outC = config.block == .bottleneck ? 4 * width : width
            for b in 0..<config.blocks[i] {
                let stride = (b == 0 && i > 0) ? 2 : 1
                let name = "layer\(i + 1).\(b)"
                let (oh, ow) = (out(h, 3, stride, 1), out(w, 3, stride, 1))
                if config.block == .basic {
                    convs.append((name + ".conv1", cin, width, 3, stride, h, w))
                    convs.append((name + ".conv2", width, width, 3, 1, oh, ow))
                } else {
                    convs.append((name + ".conv1", cin, width, 1, 1, h, w))
                    convs.append((name + ".conv2", width, width, 3, stride, h, w))
                    convs.append((name + ".conv3", width, outC, 1, 1, oh, ow))
                }
                if stride != 1 || cin != outC { convs.append((name + ".downsample", cin, outC, 1, stride, h, w)) }
                (h, w, cin) = (oh, ow, outC)
            }
        }
        var shapes: [GemmShape] = []
        func add(_ s: GemmShape) {
            if let i = shapes.firstIndex(where: { $0.sameGemm(as: s) }) { shapes[i].count += 1 } else { shapes.append(s) }
        }
        for c in convs {
            let pad = c.kernel / 2
            let p = out(c.h, c.kernel, c.stride, pad) * out(c.w, c.kernel, c.stride, pad), ckk = c.cin * c.kernel * c.kernel
            add(GemmShape("\(c.name) fwd", m: c.cout, n: p, k: ckk, batch: images))
            add(GemmShape("\(c.name) gradW", transB: true, m: c.cout, n: ckk, k: p, calls: images, beta: 1))
            if c.name != "stem" { add(GemmShape("\(c.name) gradX", transA: true, m: ckk, n: p, k: c.cout, batch: images)) }
        }
        return shapes
    }

    /// Whether `other` is the same GEMM (all but the name and count).
    func sameGemm(as other: GemmShape) -> Bool {
        transA == other.transA && transB == other.transB && (m, n, k) == (other.m, other.n, other.k)
            && (batch, calls) == (other.batch, other.calls) && beta == other.beta
    }
}
