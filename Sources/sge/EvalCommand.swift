import ArgumentParser
import Foundation
import SGEEngine
import SGENet
import SGETensor

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Top-1 and top-5 accuracy, loss and per-class accuracy (with the confusion matrix) of a checkpoint.",
        discussion: "With --dataset imagefolder --data DIR the val/ images are resized to --image-size·256/224 on the shorter side and centre-cropped.")

    @OptionGroup var device: DeviceOptions
    @OptionGroup var data: DataOptions
    @Argument(help: "A checkpoint written by `sge train` (safetensors); or give --weights (and --model for a PyTorch state_dict).")
    var checkpoint: String?
    @OptionGroup var source: WeightsOptions
    @Option(name: .customLong("batch-size"), help: "Evaluation batch size.") var batchSize = 256
    @Flag(help: "Print the result as JSON.") var json = false

    func run() throws {
        try runCLI {
            let choice = try device.choose(quiet: json)
            guard (self.checkpoint == nil) != (source.weights == nil) else {
                throw SGEError.invalidArgument("give a checkpoint, or --weights FILE (with --model for a PyTorch state_dict), not both")
            }
            let checkpoint = self.checkpoint ?? source.weights!
            let weights = try Weights(path: checkpoint, model: source.model)
            let config = weights.config
            let model = try weights.model(on: choice.backend)
            let test = try data.loadImages(train: false)
            if let stored = weights.classNames, stored != test.classNames {
                log("warning: \(checkpoint) was trained on classes \(stored.prefix(20).joined(separator: ", ")); the data's are \(test.classNames.prefix(20).joined(separator: ", "))")
            }
            let classNames = weights.classNames ?? test.classNames
            guard test.channels == config.inputChannels else {
                throw SGEError.invalidArgument("\(checkpoint) expects \(config.inputChannels)-channel images; --dataset \(data.dataset) has \(test.channels)")
            }
            guard batchSize > 0 else { throw SGEError.invalidArgument("--batch-size \(batchSize): must be at least 1") }
            try MemoryEstimate.check(config, batch: min(batchSize, test.count), channels: test.channels, height: test.height, width: test.width,
                                     backend: choice.backend, training: false)
            warnIfReference(choice.backend, work: "evaluating \(test.count) images")
            installStopHandler()
            let progress = EvaluationProgress()
            let e: Evaluation
            do {
                e = try Trainer.evaluate(model: model, backend: choice.backend, data: test, batchSize: batchSize) { done, total in
                    progress.update(done: done, total: total)
                }
                progress.finish()
            } catch let stop as EvaluationInterrupted {
                progress.finish()
                log("\(stop); no result")
                throw ExitCode(130)
            }
            if let warning = e.skipped.warning("evaluation") { log(warning) }
            if !e.loss.isFinite {
                log("warning: the loss is \(e.loss) (the model's outputs overflow on these images)\(json ? "; written as null in the JSON" : "")")
            }
            if json {
                print(try jsonText(EvaluationReport(e, checkpoint: checkpoint, classes: classNames), pretty: false))
                return
            }
            print(String(format: "%@: %d test images, accuracy %.2f%%, loss %.4f", checkpoint, e.count, 100 * e.accuracy, e.loss))
            print(String(format: "top-1 %.2f%%  top-%d %.2f%%", 100 * e.accuracy, e.topK, 100 * e.topKAccuracy)
                + (e.topK < 5 ? " (top-5 is top-\(e.topK) with \(e.topK) classes)" : ""))
            print("classes: " + classNames.prefix(20).joined(separator: ", ") + (classNames.count > 20 ? ", ... (\(classNames.count))" : ""))
            guard e.confusion.count <= 20 else { return }
            print("\nper-class accuracy:")
            for (i, name) in classNames.enumerated() where i < e.perClassAccuracy.count {
                print("  " + name.padding(toLength: 14, withPad: " ", startingAt: 0) + String(format: "%6.2f%%", 100 * e.perClassAccuracy[i]))
            }
            print("\nconfusion matrix (rows: true class, columns: predicted):")
            print("      " + (0..<e.confusion.count).map { String(format: "%5d", $0) }.joined())
            for (i, row) in e.confusion.enumerated() {
                print(String(format: "  %2d  ", i) + row.map { String(format: "%5d", $0) }.joined())
            }
        }
    }
}
