import ArgumentParser
import Foundation
import SGEBench
import SGEEngine
import SGEOpenCL
import SGETensor

/// `sge conv`: times Conv2d forward and backward on the OpenCL backend next to a plain CLBlast
/// SGEMM of the same size, so the im2col/col2im overhead is visible.
struct BenchConv: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conv",
        abstract: "Benchmark Conv2d forward/backward (CLBlast) against a plain SGEMM of the same size.",
        discussion: """
            Cases: 3×3 64→64 pad 1 and 1×1 256→64, both on 56×56 images. Each timing is a whole call \
            followed by clFinish (wall clock), after warm-up runs; the median of the repeats is reported, \
            with the measurements interleaved round-robin so load from other processes hits all alike. \
            FLOPs per direction: 2·N·Cout·Cin·KH·KW·OH·OW (backward = grad input + grad weight = 2 directions). \
            The 3×3 case is timed with every ConvAlgorithm and with Winograd F(2×2, 3×3) (algorithm "winograd": \
            the forward, and its grad input with the wide grad weight; same FLOP count, an effective rate); \
            indented rows break the work down. --json prints only a \
            JSON array on stdout, one object per row: op ("conv", or "sgemm"/"im2col" for the reference and the \
            breakdown), shape (the case in ASCII, e.g. "3x3 64->64 pad 1 8x64x56x56"), direction ("forward", \
            "backward" = grad input + grad weight + grad bias, "backward gw only"), algorithm, ms, gflops, \
            fraction_of_sgemm, device. --case CIN,COUT,K[,STRIDE[,PAD]] times one shape instead (at --batch and \
            --size) under the wide algorithm: the forward and backward with conv_cpu.cl's kernels and with CLBlast, the \
            CLBlast backward plans (grad input per image or one GEMM; grad weight per image, in slices of 2-32 images \
            or one GEMM: `backward gw only`), Winograd where it applies (3×3, stride 1, pad ≤ 2), and the plain \
            SGEMM of the forward's size.
            """)

    @OptionGroup var options: DeviceOptions
    @Option(help: "Batch size.") var batch = 8
    @Option(help: "Image height and width.") var size = 56
    @Option(help: "Timed repeats per measurement (the median is reported).") var repeats = 5
    @Option(help: "Untimed warm-up runs per measurement.") var warmup = 2
    @Flag(help: "Print JSON instead of a table.") var json = false
    @Option(help: "Time the wide algorithm's backward plans at this shape instead of the two cases: CIN,COUT,K[,STRIDE[,PAD]] (repeatable).")
    var `case`: [String] = []

    func run() throws {
        try runCLI {
            let choice = try options.choose(quiet: json)
            guard let device = choice.backend as? OpenCLBackend else {
                throw SGEError.invalidArgument("sge bench conv times the OpenCL backend; select an OpenCL device with --device")
            }
            let bench = try ConvBenchmark(batch: batch, size: size, repeats: repeats, warmup: warmup)
            let rows = `case`.isEmpty ? try bench.run(device) : try `case`.flatMap { try bench.runPlans(device, ConvBenchCase(parsing: $0)) }
            if json {
                print(try jsonText(rows))
                return
            }
            print("device \(device.name), batch \(batch), \(size)×\(size), median of \(repeats) (after \(warmup) warm-up); "
                  + "convolution algorithm \(device.convWorkspace.algorithm.rawValue) unless named")
            for r in rows {
                let what = r.op == "conv" ? "\(r.direction) \(r.algorithm)" : "  \(r.op) \(r.direction)"
                print("  \(r.shape.padding(toLength: 28, withPad: " ", startingAt: 0)) \(what.padding(toLength: 48, withPad: " ", startingAt: 0))"
                      + String(format: "%9.2f ms %8.1f GFLOP/s", r.ms, r.gflops) + (r.gflops > 0 ? String(format: " %5.0f%% of SGEMM", 100 * r.fractionOfSgemm) : ""))
            }
        }
    }
}
