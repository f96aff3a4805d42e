import ArgumentParser
import Foundation
import SGEEngine
import SGENet
import SGETensor

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Test accuracy, loss and per-class accuracy (with the confusion matrix) of a checkpoint.")

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
            let test = try data.load(train: false)
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
            if !e.loss.isFinite {
                log("warning: the loss is \(e.loss) (the model's outputs overflow on these images)\(json ? "; written as null in the JSON" : "")")
            }
            if json {
                // JSON has no NaN or Inf: a non-finite loss is written as null.
                let object: [String: Any] = ["checkpoint": checkpoint, "count": e.count, "loss": e.loss.isFinite ? e.loss as Any : NSNull(),
                                             "accuracy": e.accuracy, "per_class_accuracy": e.perClassAccuracy, "confusion": e.confusion,
                                             "classes": test.classNames]
                print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
                return
            }
            print(String(format: "%@: %d test images, accuracy %.2f%%, loss %.4f", checkpoint, e.count, 100 * e.accuracy, e.loss))
            print("\nper-class accuracy:")
            for (i, name) in test.classNames.enumerated() where i < e.perClassAccuracy.count {
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
