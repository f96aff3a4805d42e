import Foundation
import SGEKernels
import SGEOpenCL
import SGEReference
import SGETensor

/// The convolution one Winograd call computes (winograd.cl's "effective convolution"): KI input and
/// KO output channels, an H×W input padded by (PH, PW) and an OH×OW output cut into TH×TW 2×2 tiles.
struct WinogradGeometry {
    var n, ki, ko, h, w, oh, ow, ph, pw: Int
    var th: Int { (oh + 1) / 2 }
    var tw: Int { (ow + 1) / 2 }

    /// The forward: x → out with the convolution's own padding.
    static func forward(_ s: Reference.Conv2dShape) -> WinogradGeometry {
        WinogradGeometry(n: s.n, ki: s.c, ko: s.k, h: s.h, w: s.w, oh: s.outH, ow: s.outW, ph: s.padH, pw: s.padW)
    }

    /// The input gradient: gradOut → gradInput, a 3×3 convolution with the weights rotated by 180°,
    /// channels swapped and padding 2 − pad (its output is H×W again: OH + 2(2 − pad) − 2 = H).
    static func backwardInput(_ s: Reference.Conv2dShape) -> WinogradGeometry {
        WinogradGeometry(n: s.n, ki: s.k, ko: s.c, h: s.outH, w: s.outW, oh: s.h, ow: s.w, ph: 2 - s.padH, pw: 2 - s.padW)
    }
}

/// 3×3 stride-1 convolutions by Winograd's F(2×2, 3×3) (the maths is in Kernels/winograd.cl): a
/// filter transform launch per call (the weights change every step), then on CPU drivers one fused
/// launch (winograd_cpu.cl: input transform, the 16 GEMMs and the output transform per chunk of 32
/// tiles, in local memory), on GPUs the portable path: input transform, 16 strided-batched CLBlast
/// GEMMs, output transform, per chunk of images under the column cap.
extension OpenCLBackend {
    /// Output channels per register block of winograd_fused (OB accumulator pairs);
    /// `SGE_WINOGRAD_OB` sets it for measurements.
    static let winogradOutputBlock = Int(ProcessInfo.processInfo.environment["SGE_WINOGRAD_OB"] ?? "") ?? 8
    /// Lanes (tiles) per winograd_fused work-item.
    static let winogradLanes = 32

    /// Forces the fused CPU-driver kernel (true) or the portable path (false) on any device; nil: fused
    /// on CPU drivers, portable on GPUs. Tests set it; `SGE_WINOGRAD_FUSED=0|1` for measurements.
    nonisolated(unsafe) static var winogradFused: Bool? = ProcessInfo.processInfo.environment["SGE_WINOGRAD_FUSED"]
        .flatMap { Int($0) }.map { $0 != 0 }

    /// Whether the Winograd path can run this convolution: 3×3, stride 1, dilation 1, padding 0...2
    /// on each axis (the input gradient's padding is 2 − pad).
    static func winogradApplies(_ s: Reference.Conv2dShape) -> Bool {
        s.kh == 3 && s.kw == 3 && s.strideH == 1 && s.strideW == 1 && s.dilationH == 1 && s.dilationW == 1
            && (0...2).contains(s.padH) && (0...2).contains(s.padW)
    }

    /// out (NCHW, overwritten) = conv2d(x, weight) + bias via F(2×2, 3×3).
    func winogradForward(_ s: Reference.Conv2dShape, x: CLBuffer, weight: CLBuffer, out: CLBuffer, bias: CLBuffer?) throws {
        try requireWinograd(s, "winograd forward")
        try winograd(.forward(s), flip: false, input: x, weight: weight, out: out, bias: bias)
    }

    /// gradInput (NCHW, overwritten) = ∂L/∂x via Winograd: the 3×3 convolution of gradOut with the
    /// weights rotated by 180°, Cin/Cout swapped and padding 2 − pad.
    func winogradBackwardInput(_ s: Reference.Conv2dShape, gradOut: CLBuffer, weight: CLBuffer, gradInput: CLBuffer) throws {
        try requireWinograd(s, "winograd backward input")
        try winograd(.backwardInput(s), flip: true, input: gradOut, weight: weight, out: gradInput, bias: nil)
    }

    /// Lanes (tiles) per chunk of winograd_gw_partials (`SGE_WINOGRAD_GW_LANES` for measurements).
    static let winogradWeightGradLanes = Int(ProcessInfo.processInfo.environment["SGE_WINOGRAD_GW_LANES"] ?? "") ?? 32
    /// Work-items of winograd_gw_partials per compute unit (`SGE_WINOGRAD_GW_ITEMS` for measurements;
    /// tests set it to split a batch's tiles across more or fewer work-items).
    nonisolated(unsafe) static var winogradWeightGradItemsPerUnit = Int(ProcessInfo.processInfo.environment["SGE_WINOGRAD_GW_ITEMS"] ?? "") ?? 4

    /// Local bytes of one winograd_gw_partials work-item: M (16·K·C), V (16·C·lanes), Y' (16·K·lanes), staging.
    private func winogradWeightGradLocalBytes(_ s: Reference.Conv2dShape) -> (m: Int, v: Int, y: Int, staging: Int) {
        let lanes = Self.winogradWeightGradLanes
        return (16 * s.k * s.c * 4, 16 * s.c * lanes * 4, 16 * s.k * lanes * 4, 4 * (2 * lanes + 16) * 4)
    }

    /// Whether `winogradWeightGrad` runs this convolution: Winograd applies, the device is a CPU
    /// driver (or `winogradFused` forces the CPU kernels) and its local memory holds one work-item's
    /// M, V, Y' and staging (16·(K·C + (K + C)·32)·4 bytes: 512 KiB at 64 → 64).
    func winogradWeightGradApplies(_ s: Reference.Conv2dShape) -> Bool {
        let l = winogradWeightGradLocalBytes(s)
        return Self.winogradApplies(s) && (Self.winogradFused ?? !device.info.isGPU)
            && UInt64(l.m + l.v + l.y + l.staging) <= device.info.localMemory
    }

    /// gradWeight (K×C×3×3) += ∂L/∂w via F(2×2, 3×3), the adjoint of the forward in g (the maths is in
    /// winograd_cpu.cl): winograd_gw_partials sums M[k][c][ξ] = Σ_tiles Y'_k[ξ]·V_c[ξ] over its blocks
    /// of tiles into the partials buffer, then winograd_gw_finish sums the blocks and adds GᵀMG. Two
    /// launches; CPU drivers (`winogradWeightGradApplies`).
    func winogradWeightGrad(_ s: Reference.Conv2dShape, gradOut: CLBuffer, x: CLBuffer, gradWeight: CLBuffer) throws {
        try requireWinograd(s, "winograd weight gradient")
        guard winogradWeightGradApplies(s) else {
            throw SGEError.invalidArgument("winograd weight gradient: needs a CPU driver and \(winogradWeightGradLocalBytes(s)) bytes of local memory, got \(device.info.localMemory) for \(s)")
        }
        let g = WinogradGeometry.forward(s), lanes = Self.winogradWeightGradLanes
        let chunks = (g.n * g.th * (g.tw + 1) + lanes - 1) / lanes
        let target = max(1, min(chunks, Self.winogradWeightGradItemsPerUnit * max(device.info.computeUnits, 1)))
        let per = (chunks + target - 1) / target, items = (chunks + per - 1) / per
        let partial = try convWorkspace.partialBuffer(bytes: items * 16 * g.ko * g.ki * 4, context: device)
        let l = winogradWeightGradLocalBytes(s)
        try launch(kernel("winograd_gw_partials", KernelSource.winogradCPU, ["WLANES": "\(lanes)"]),
                   [.buffer(x), .buffer(gradOut), .buffer(partial), .int(Int32(g.n)), .int(Int32(g.ki)), .int(Int32(g.ko)),
                    .int(Int32(g.h)), .int(Int32(g.w)), .int(Int32(g.oh)), .int(Int32(g.ow)), .int(Int32(g.ph)), .int(Int32(g.pw)),
                    .int(Int32(g.th)), .int(Int32(g.tw)), .int(Int32(chunks)), .int(Int32(per)),
                    .local(l.m), .local(l.v), .local(l.y), .local(l.staging)],
                   global: [items], local: [1])
        try launch(kernel("winograd_gw_finish", KernelSource.winogradCPU, ["WLANES": "\(lanes)"]),
                   [.buffer(partial), .buffer(gradWeight), .int(Int32(g.ko)), .int(Int32(g.ki)), .int(Int32(items))],
                   global: [g.ki, g.ko], local: nil)
    }

    private func requireWinograd(_ s: Reference.Conv2dShape, _ op: String) throws {
        guard Self.winogradApplies(s) else {
            throw SGEError.invalidArgument("\(op): needs a 3×3 kernel, stride 1, dilation 1 and padding 0...2, got \(s)")
        }
    }

    /// Local bytes of one winograd_fused work-item: V (16·KI·lanes), M (16·OB·lanes), staging.
    private func winogradFusedLocalBytes(_ g: WinogradGeometry) -> (v: Int, m: Int, staging: Int) {
        let lanes = Self.winogradLanes
        return (16 * g.ki * lanes * 4, 16 * Self.winogradOutputBlock * lanes * 4, (4 * 80 + 4 * lanes) * 4)
    }

    /// Whether this call runs winograd_fused: on CPU drivers (or forced) when its local memory fits.
    private func winogradUsesFused(_ g: WinogradGeometry) -> Bool {
        let l = winogradFusedLocalBytes(g)
        return (Self.winogradFused ?? !device.info.isGPU) && UInt64(l.v + l.m + l.staging) <= device.info.localMemory
    }

    private func winograd(_ g: WinogradGeometry, flip: Bool, input: CLBuffer, weight: CLBuffer, out: CLBuffer, bias: CLBuffer?) throws {
        // U[16][KO][KI] (the workspace's partials buffer: the queue is in order, so the weight
        // gradient that reuses it afterwards waits for these kernels).
        let u = try convWorkspace.partialBuffer(bytes: 16 * g.ko * g.ki * 4, context: device)
        try launch(kernel("winograd_filter", KernelSource.winograd),
                   [.buffer(weight), .buffer(u), .int(Int32(g.ko)), .int(Int32(g.ki)), .int(flip ? 1 : 0)],
                   global: [g.ki, g.ko], local: nil)
        let geometry: [CLKernel.Arg] = [.int(Int32(g.h)), .int(Int32(g.w)), .int(Int32(g.oh)), .int(Int32(g.ow)),
                                        .int(Int32(g.ph)), .int(Int32(g.pw)), .int(Int32(g.th)), .int(Int32(g.tw))]
        if winogradUsesFused(g) {
            let lanes = g.n * g.th * (g.tw + 1), chunks = (lanes + Self.winogradLanes - 1) / Self.winogradLanes
            let l = winogradFusedLocalBytes(g)
            try launch(kernel("winograd_fused", KernelSource.winogradCPU, ["OB": "\(Self.winogradOutputBlock)"]),
                       [.buffer(input), .buffer(u), .buffer(out), .buffer(bias ?? u), .int(bias == nil ? 0 : 1),
                        .int(Int32(g.n)), .int(Int32(g.ki)), .int(Int32(g.ko))] + geometry
                       + [.local(l.v), .local(l.m), .local(l.staging)],
                       global: [chunks], local: [1])
            return
        }
        // Portable: per chunk of b images, V (16·KI·T), M (16·KO·T) with T = b·TH·TW tiles.
        let tiles = g.th * g.tw
        let perImage = 16 * (g.ki + g.ko) * tiles * 4
        let chunk = max(1, min(g.n, convWorkspace.columnLimitBytes / max(perImage, 1)))
        let v = try convWorkspace.columnBuffer(bytes: chunk * 16 * g.ki * tiles * 4, context: device)
        let m = try convWorkspace.wideBuffer(bytes: chunk * 16 * g.ko * tiles * 4, context: device)
        for n0 in stride(from: 0, to: g.n, by: chunk) {
            let t = min(chunk, g.n - n0) * tiles
            try launch(kernel("winograd_input", KernelSource.winograd),
                       [.buffer(input), .buffer(v), .int(Int32(n0)), .int(Int32(g.ki)), .int(Int32(g.h)), .int(Int32(g.w)),
                        .int(Int32(g.ph)), .int(Int32(g.pw)), .int(Int32(g.th)), .int(Int32(g.tw)), .int(Int32(t))],
                       global: [t, g.ki], local: nil)
            // M_ξ (KO × T) = U_ξ (KO × KI) · V_ξ (KI × T), ξ < 16.
            try device.enqueueSgemmStridedBatched(.no, .no, m: g.ko, n: t, k: g.ki, a: u, lda: g.ki, strideA: g.ko * g.ki,
                                                  b: v, ldb: t, strideB: g.ki * t, c: m, ldc: t, strideC: g.ko * t, batch: 16)
            try launch(kernel("winograd_output", KernelSource.winograd),
                       [.buffer(m), .buffer(out), .buffer(bias ?? m), .int(bias == nil ? 0 : 1), .int(Int32(n0)), .int(Int32(g.ko)),
                        .int(Int32(g.oh)), .int(Int32(g.ow)), .int(Int32(g.th)), .int(Int32(g.tw)), .int(Int32(t))],
                       global: [t, g.ko], local: nil)
        }
    }
}
