import SGEEngine
import SGETensor
import SGEDeviceTestSupport
import XCTest

/// The GPU BatchNorm kernels (Kernels/batchnorm_gpu.cl: several work-groups per channel, partial
/// statistics merged with Chan et al.'s formula) run on PoCL here, forced with `batchNormVariant`,
/// against the reference at awkward shapes: N·H·W smaller than one part, not a multiple of the
/// work-group size, H·W = 1, C = 1 and many channels (one part each), with and without the fused
/// ReLU, training and eval-mode backward. Tolerances are OpsTests' BatchNorm ones (float32 sums of up
/// to ~10^4 O(1) values against Double; the merge adds a few roundings per part).
final class BatchNormGPUTests: XCTestCase {
    let forwardTolerance = 1e-5
    let backwardTolerance = 1e-4
    var rng = SeededRNG(seed: 11)
    let reference = ReferenceBackend()

    func pair(_ device: OpenCLBackend, _ shape: Shape, std: Float = 1, mean: Float = 0) throws -> (Tensor, Tensor) {
        let v = rng.normals(shape.count, std: std).map { $0 + mean }
        return (try device.tensor(v, shape), try reference.tensor(v, shape))
    }

    func testGPUKernelsMatchReference() throws {
        let device = try testDevice()
        device.batchNormVariant = .gpu
        defer { device.batchNormVariant = nil }
        for shape: Shape in [[1, 3, 7, 13], [9, 17, 7, 13], [4, 93, 1, 1], [3, 1, 33, 31], [2, 5, 1, 2], [64, 2, 12, 12]] {
            for relu in [false, true] {
                let what = "\(shape) relu=\(relu)"
                let c = Shape([shape.c])
                let (xd, xr) = try pair(device, shape, std: 2, mean: 0.5)
                let (gd, gr) = try pair(device, c), (bd, br) = try pair(device, c)
                let rm = rng.normals(shape.c), rv = rng.uniforms(shape.c, 0.5, 2)
                let (rmd, rmr) = (try device.tensor(rm, c), try reference.tensor(rm, c))
                let (rvd, rvr) = (try device.tensor(rv, c), try reference.tensor(rv, c))
                let fd = try device.batchNormForward(xd, gamma: gd, beta: bd, runningMean: rmd, runningVar: rvd, training: true,
                                                     momentum: 0.1, eps: 1e-5, relu: relu)
                let fr = try reference.batchNormForward(xr, gamma: gr, beta: br, runningMean: rmr, runningVar: rvr, training: true,
                                                        momentum: 0.1, eps: 1e-5, relu: relu)
                try assertClose(fd.out, fr.out, atol: forwardTolerance, rtol: forwardTolerance, "\(what) out")
                try assertClose(fd.saved.mean, fr.saved.mean, atol: forwardTolerance, rtol: forwardTolerance, "\(what) mean")
                try assertClose(fd.saved.invstd, fr.saved.invstd, atol: forwardTolerance, rtol: forwardTolerance, "\(what) invstd")
                try assertClose(rmd, rmr, atol: forwardTolerance, rtol: forwardTolerance, "\(what) running mean")
                try assertClose(rvd, rvr, atol: forwardTolerance, rtol: forwardTolerance, "\(what) running var")
                for training in [true, false] {
                    let saved = (d: BatchNormSaved(mean: fd.saved.mean, invstd: fd.saved.invstd, training: training),
                                 r: BatchNormSaved(mean: fr.saved.mean, invstd: fr.saved.invstd, training: training))
                    let (god, gor) = try pair(device, shape)
                    // Non-zero starting parameter gradients: they must accumulate.
                    let start = rng.normals(shape.c)
                    let (ggd, ggr) = (try device.tensor(start, c), try reference.tensor(start, c))
                    let (gbd, gbr) = (try device.tensor(start, c), try reference.tensor(start, c))
                    let gxd = try device.batchNormBackward(god, x: xd, gamma: gd, saved: saved.d, gradGamma: ggd, gradBeta: gbd,
                                                           reluOutput: relu ? fd.out : nil)
                    let gxr = try reference.batchNormBackward(gor, x: xr, gamma: gr, saved: saved.r, gradGamma: ggr, gradBeta: gbr,
                                                              reluOutput: relu ? fr.out : nil)
                    let w = "\(what) training=\(training)"
                    try assertClose(gxd, gxr, atol: backwardTolerance, rtol: backwardTolerance, "\(w) grad x")
                    try assertClose(ggd, ggr, atol: backwardTolerance, rtol: backwardTolerance, "\(w) grad gamma")
                    try assertClose(gbd, gbr, atol: backwardTolerance, rtol: backwardTolerance, "\(w) grad beta")
                }
            }
        }
    }

    /// A constant channel (variance 0) stays finite: out = beta, and the merge of equal-mean parts
    /// adds no spurious variance.
    func testConstantChannelIsFinite() throws {
        let device = try testDevice()
        device.batchNormVariant = .gpu
        defer { device.batchNormVariant = nil }
        let shape: Shape = [64, 1, 12, 12]
        let x = try device.tensor([Float](repeating: 3, count: shape.count), shape)
        let one = try device.tensor([1], [1]), zero = try device.tensor([0.25], [1])
        let f = try device.batchNormForward(x, gamma: one, beta: zero, runningMean: try device.tensor([0], [1]),
                                            runningVar: try device.tensor([1], [1]), training: true, momentum: 0.1, eps: 1e-5)
        XCTAssertEqual(try f.saved.mean.read(), [3])
        for v in try f.out.read() { XCTAssertEqual(v, 0.25, accuracy: 1e-6) }
    }
}
