import ArgumentParser
import Foundation
import SGEEngine
import SGEBench
import SGENet
import SGEOpenCL
import SGETuning
import SGETensor

/// `sge tune`: searches CLBlast SGEMM parameters for the selected device and stores the winner.
struct Tune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Tune CLBlast's SGEMM (Xgemm, XgemmDirect, direct/indirect threshold) for the selected device.",
        discussion: """
            Times SGEMM at the GEMM shapes of a model's convolutions (--model, default the small model at 28×28; forward, grad weight, \
            grad input) plus 512³, over a curated list of CLBlast parameter sets, each validated \
            against a reference GEMM. The winner is stored per device and driver under \
            $XDG_CACHE_HOME/sge/tuning (else ~/.cache/sge/tuning) and applied automatically \
            whenever sge opens the device. Where sge ships known-good parameters for the device's \
            class (ShippedTuning.json: PoCL on AVX-512 and on AVX2 CPUs, by native float vector width; NVIDIA GPUs) and none are stored, those \
            apply and tuning is skipped unless --force; a forced search starts from them and stores its \
            result only if it beats them by more than 2%.
            """)

    @OptionGroup var options: DeviceOptions
    @Option(help: "Wall-clock budget in seconds for trying candidates; at least one is always tried. Each parameter set PoCL has not compiled before costs 25-90 s (CLBlast's GEMM program), so rerun with --force or a larger budget to explore further.")
    var budget: Double = 60
    @Option(help: "Images per convolution GEMM timed (the per-image GEMM shapes are those of batch 128; fewer images keep each candidate short).")
    var images: Int = 16
    @Option(help: "The model whose convolution GEMMs are tuned (a preset: small, resnet20, resnet18, resnet34, resnet50, resnet101).")
    var model = "small"
    @Option(help: "Its image size (default 28).")
    var imageSize = 28
    @Flag(help: "Print the result as JSON.")
    var json = false
    @Flag(help: "Delete the stored tuning and convolution choices of the device and exit.")
    var reset = false
    @Flag(help: "Tune even if a tuning is already stored.")
    var force = false

    func run() throws {
        try runCLI {
            guard budget >= 0, images >= 1 else { throw SGEError.invalidArgument("tune: --budget must be ≥ 0 and --images ≥ 1") }
            CLBlastTuning.autoApply = false  // measure CLBlast's defaults, not a stored tuning
            guard let info = try options.choose(quiet: json).info else {
                throw SGEError.invalidArgument("tune: the reference backend has nothing to tune; select an OpenCL device with --device")
            }
            let file = CLBlastTuning.file(for: info)
            if reset {
                let existed = try CLBlastTuning.reset(for: info)
                print(existed ? "deleted \(file.path)" : "no stored tuning for \(info.name) (\(file.path))")
                let convFile = ConvChoices.file(for: info)
                if try ConvChoices.reset(for: info) { print("deleted the stored convolution choices \(convFile.path)") }
                return
            }
            if !force, FileManager.default.fileExists(atPath: file.path) {
                print("tuning already stored for \(info.name) at \(file.path); skipping (use --force to tune again, --reset to delete)")
                return
            }
            let shipped = ShippedTuning.embedded.match(info)
            if !force, let shipped {
                print("shipped known-good CLBlast parameters for \(shipped.name) apply to \(info.name); skipping (use --force to search for better ones)")
                print("  measured: \(shipped.measured)")
                return
            }
            let context = try CLContext.shared(for: info)
            let config = try ResNetConfig.preset(model, channels: model == "small" ? 1 : 3, height: imageSize, classes: 10)
            let shapes = GemmShape.training(config, height: imageSize, width: imageSize, images: images) + [GemmShape.square512]
            let tuner = try GemmTuner(context: context, shapes: shapes)
            if !json { tuner.progress = { print($0) } }
            // The shipped set is the first candidate, so the search starts from it.
            let candidates = (shipped?.candidate).map { [$0] + GemmCandidates.triples(info) } ?? GemmCandidates.triples(info)
            var outcome = try tuner.tune(budget: budget, candidates: candidates)
            var shippedSeconds: [Double]?
            if let shipped {
                // An entry without parameters stands for CLBlast's defaults, measured as `before`.
                if shipped.candidate == nil {
                    shippedSeconds = outcome.before
                } else {
                    try shipped.tuning(for: info).apply(to: context)
                    shippedSeconds = tuner.timeAll()
                }
                if let s = shippedSeconds, let _ = outcome.tuning, !(tuner.weighted(outcome.after) < 0.98 * tuner.weighted(s)) {
                    outcome.tuning = nil
                    if !json { print("the search found nothing more than 2% faster than the shipped parameters for \(shipped.name); nothing stored") }
                }
            }
            let before = tuner.gflops(outcome.before), after = tuner.gflops(outcome.after)
            var stored: URL?
            if var tuning = outcome.tuning {
                tuning.results = zip(shapes, zip(before, after)).map { .init(shape: $0.0.description, before: $0.1.0, after: $0.1.1) }
                stored = try tuning.save(for: info)
            }
            let flops = shapes.reduce(0) { $0 + $1.flops * Double($1.count) }
            let total = { (t: [Double]) in zip(shapes, t).reduce(0) { $0 + Double($1.0.count) * $1.1 } }
            if json {
                let report = TuneReport(
                    device: info.name, stored: stored?.path, threshold: outcome.threshold, xgemm: outcome.tuning?.xgemm,
                    xgemmDirect: outcome.tuning?.xgemmDirect, candidatesTried: outcome.tried, afterRemeasured: outcome.remeasured,
                    candidatesRejected: outcome.rejected, totalGflopsBefore: flops / total(outcome.before) / 1e9,
                    totalGflopsAfter: flops / total(outcome.after) / 1e9, shipped: shipped?.name,
                    totalGflopsShipped: shippedSeconds.map { flops / total($0) / 1e9 },
                    shapes: zip(shapes, zip(before, after)).map { .init(shape: $0.0.description, before: $0.1.0, after: $0.1.1) })
                print(try jsonText(report))
                return
            }
            print("")
            print("GFLOP/s per GEMM shape (\(images) images per conv GEMM), CLBlast defaults -> tuned:")
            for (s, (b, a)) in zip(shapes, zip(before, after)) {
                print(String(format: "  %-44@ %7.1f -> %7.1f  (x%.2f)", s.description as NSString, b, a, a / b))
            }
            print(String(format: "  %-44@ %7.1f -> %7.1f  (x%.2f)", "all (count-weighted)" as NSString,
                         flops / total(outcome.before) / 1e9, flops / total(outcome.after) / 1e9, total(outcome.before) / total(outcome.after)))
            if !outcome.remeasured, outcome.tuning != nil {
                print("  (tuned column: the search's validated per-kernel timings; the winner combines two candidates)")
            }
            if let s = shippedSeconds, let shipped {
                print(String(format: "  %-44@ %7.1f (shipped parameters for %@)", "all, shipped set" as NSString, flops / total(s) / 1e9, shipped.name as NSString))
            }
            print("tried \(outcome.tried) of \(outcome.total) candidates (\(outcome.rejected) rejected: invalid results or refused by CLBlast)")
            if let t = outcome.tuning {
                print("XGEMM_MIN_INDIRECT_SIZE = \(outcome.threshold) (GEMMs with m·n·k < \(outcome.threshold)³ use XgemmDirect)")
                print("Xgemm:       " + (t.xgemm.map(describe) ?? "unchanged (no shape here runs it)"))
                print("XgemmDirect: " + (t.xgemmDirect.map(describe) ?? "unchanged (no shape here runs it)"))
                print("stored in \(stored!.path)")
            } else {
                print("no candidate beat CLBlast's defaults; nothing stored")
            }
        }
    }

    private func describe(_ p: [String: Int]) -> String { p.keys.sorted().map { "\($0)=\(p[$0]!)" }.joined(separator: " ") }
}
