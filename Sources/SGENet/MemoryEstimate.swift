import Foundation
import SGEEngine
import SGETensor

/// How much memory a training step (or an evaluation pass) of an SGE-ResNet needs, from the model
/// configuration and the batch shape, so a batch that cannot fit is refused before anything is
/// allocated (some drivers abort instead of returning an allocation error).
///
/// Per image, counted in float32 feature maps of each layer's output size:
/// - kept for backward: every conv output, BatchNorm output + normalised input (2), ReLU output,
///   SGE output + normalised map (2), the residual sum and its ReLU, the shortcut's conv and BN (3);
/// - in flight during backward: about 4 maps of the largest size (gradients in and out, a
///   temporary, the saved tensor being read), plus the input batch and its gradient.
/// Fixed: parameters × 3 (weights, gradients, momentum) and the convolution workspace (the im2col
/// column buffer, capped at 64 MiB, and the wide layout's scratch of one feature map batch).
/// Evaluation keeps nothing for backward: about 3 maps of the largest size per image.
/// The sum is multiplied by `safety` (1.25) for the driver's and the buffer pool's overheads.
public struct MemoryEstimate: Sendable, Equatable {
    /// Bytes that do not grow with the batch.
    public var fixedBytes: UInt64
    /// Bytes per image of the batch.
    public var perImageBytes: UInt64
    /// The largest single tensor per image (must fit the device's max allocation × batch).
    public var largestTensorPerImageBytes: UInt64

    public static let safety = 1.25
    static let columnBufferBytes: UInt64 = 64 << 20

    /// Bytes for a batch of `batch` images.
    public func bytes(batch: Int) -> UInt64 {
        UInt64((Double(fixedBytes) + Double(perImageBytes) * Double(max(batch, 0))) * Self.safety)
    }

    /// The estimate for `config` on images of channels × height × width.
    public static func of(_ config: ResNetConfig, channels: Int, height: Int, width: Int, training: Bool = true) -> MemoryEstimate {
        var kept = 0.0        // floats per image kept for backward
        var largest = Double(channels * height * width)
        var h = height, w = width
        func conv(_ k: Int, _ s: Int, _ p: Int) { h = (h + 2 * p - k) / s + 1; w = (w + 2 * p - k) / s + 1 }
        func maps(_ c: Int, _ n: Double) {
            let size = Double(c * max(h, 1) * max(w, 1))
            kept += n * size
            largest = max(largest, size)
        }
        if config.stem == .imagenet {
            conv(7, 2, 3)
            maps(config.stemWidth, 4)  // conv, BN (2), ReLU
            conv(3, 2, 1)
            maps(config.stemWidth, 2)  // max pool output and argmax
        } else {
            maps(config.stemWidth, 4)
        }
        var channelsIn = config.stemWidth
        for (i, width) in config.widths.enumerated() {
            let out = config.block == .bottleneck ? width * 4 : width
            for b in 0..<config.blocks[i] {
                let stride = (b == 0 && i > 0) ? 2 : 1
                if config.block == .basic {
                    conv(3, stride, 1)
                    maps(width, 4 + 3)           // conv1, bn1 (2), relu1; conv2, bn2 (2)
                } else {
                    maps(width, 4)               // conv1 1×1, bn1 (2), relu1 at the input size
                    conv(3, stride, 1)
                    maps(width, 4)               // conv2, bn2 (2), relu2
                    maps(out, 3)                 // conv3, bn3 (2)
                }
                if config.useSGE { maps(out, 2) }  // SGE output and normalised map
                maps(out, 2)                     // residual sum and its ReLU
                if stride != 1 || channelsIn != out { maps(out, 3) }  // shortcut conv and BN (2)
                channelsIn = out
            }
        }
        let input = Double(channels * height * width)
        let perImage = training ? kept + 4 * largest + 2 * input + Double(config.classes) * 4 : 3 * largest + input + Double(config.classes) * 2
        let parameters = Double(parameterCount(config))
        let fixed = parameters * (training ? 3 : 1) * 4 + Double(columnBufferBytes)
        return MemoryEstimate(fixedBytes: UInt64(fixed), perImageBytes: UInt64(perImage * 4),
                              largestTensorPerImageBytes: UInt64(largest * 4))
    }

    /// Parameters (weights and biases, BN affine and running statistics) of `config`.
    public static func parameterCount(_ config: ResNetConfig) -> Int {
        var n = config.inputChannels * config.stemWidth * (config.stem == .imagenet ? 49 : 9) + 4 * config.stemWidth
        var cin = config.stemWidth
        for (i, width) in config.widths.enumerated() {
            let out = config.block == .bottleneck ? width * 4 : width
            for b in 0..<config.blocks[i] {
                if config.block == .basic {
                    n += cin * width * 9 + width * width * 9 + 8 * width
                } else {
                    n += cin * width + width * width * 9 + width * out + 8 * width + 4 * out
                }
                if config.useSGE { n += 2 * config.groups[i] }
                if (b == 0 && i > 0) || cin != out { n += cin * out + 4 * out }
                cin = out
            }
        }
        return n + cin * config.classes + config.classes
    }

    /// The memory available to `backend`: (bytes for everything, bytes for one allocation, a
    /// description). An OpenCL device reports its global memory and max allocation; a CPU driver
    /// (and the reference backend) lives in host memory, so the physical memory and the process's
    /// address-space limit (`ulimit -v`) cap it too.
    public static func limits(of backend: any Backend) -> (total: UInt64, maxAllocation: UInt64, what: String) {
        var total = UInt64.max, maxAllocation = UInt64.max
        var what: [String] = []
        var hostBacked = true
        if let info = backend.memory {
            total = info.globalBytes
            maxAllocation = info.maxAllocationBytes
            what.append("\(info.name): global memory \(gib(info.globalBytes)), max allocation \(gib(info.maxAllocationBytes))")
            hostBacked = !info.isGPU
        }
        if hostBacked {
            let physical = ProcessInfo.processInfo.physicalMemory
            if physical < total { total = physical; what.append("host memory \(gib(physical))") }
            var limit = rlimit()
            if getrlimit(Int32(RLIMIT_AS.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max, UInt64(limit.rlim_cur) < total {
                total = UInt64(limit.rlim_cur)
                what.append("address-space limit (ulimit -v) \(gib(total))")
            }
        }
        return (total, min(maxAllocation, total), what.joined(separator: "; "))
    }

    /// The largest batch whose estimate fits `total` and whose largest tensor fits `maxAllocation`.
    public func largestBatch(total: UInt64, maxAllocation: UInt64) -> Int {
        let budget = Double(total) / Self.safety - Double(fixedBytes)
        guard budget > 0, perImageBytes > 0 else { return 0 }
        let byTotal = budget / Double(perImageBytes)
        let byAllocation = Double(maxAllocation) / Double(max(largestTensorPerImageBytes, 1))
        return Int(min(byTotal, byAllocation, Double(Int32.max)))
    }

    /// Throws `SGEError.memory` (with the estimate, the limit and a batch size that fits) unless a
    /// batch of `batch` fits `backend`. `what` names the work ("training", "evaluation").
    public static func check(_ config: ResNetConfig, batch: Int, channels: Int, height: Int, width: Int,
                             backend: any Backend, training: Bool = true) throws {
        let l = limits(of: backend)
        try of(config, channels: channels, height: height, width: width, training: training)
            .check(batch: batch, total: l.total, maxAllocation: l.maxAllocation, limitDescription: l.what, training: training)
    }

    /// The check against explicit limits (tests use it with made-up devices).
    public func check(batch: Int, total: UInt64, maxAllocation: UInt64, limitDescription: String, training: Bool = true) throws {
        let need = bytes(batch: batch)
        let largest = largestTensorPerImageBytes * UInt64(max(batch, 0))
        guard need > total || largest > maxAllocation else { return }
        let fits = largestBatch(total: total, maxAllocation: maxAllocation)
        let suggestion = fits >= 8 ? fits / 8 * 8 : fits
        let work = training ? "a training step" : "evaluation"
        let option = "--batch-size"
        var text = "\(work) with batch \(batch) needs about \(MemoryEstimate.gib(need))"
        if largest > maxAllocation { text += " (its largest tensor \(MemoryEstimate.gib(largest)), over the max allocation \(MemoryEstimate.gib(maxAllocation)))" }
        text += ", but the limit is \(MemoryEstimate.gib(total)) (\(limitDescription)). "
        text += suggestion > 0 ? "Use a smaller batch: \(option) \(suggestion) fits (estimate \(MemoryEstimate.gib(bytes(batch: suggestion))))"
            : "Even batch 1 does not fit; use a smaller model or another device (--device)"
        throw SGEError.memory(text)
    }

    static func gib(_ bytes: UInt64) -> String {
        bytes >= 1 << 30 ? String(format: "%.1f GiB", Double(bytes) / Double(1 << 30)) : String(format: "%.0f MiB", Double(bytes) / Double(1 << 20))
    }
}
