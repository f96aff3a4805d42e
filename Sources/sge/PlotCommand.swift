import ArgumentParser
import Foundation
import SGENet
import SGEViz

struct PlotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plot",
        abstract: "Plot a training run's metrics JSONL as a PNG (loss and accuracy panels).",
        discussion: """
            RUN.jsonl holds one JSON object per line with any of: kind ("step"/"epoch"), epoch, step, \
            train_loss, train_acc, test_loss, test_acc, lr, images_per_s. The x axis is the epoch \
            (step records placed at fractional epochs) or, without epochs, the step.
            """)

    @Argument(help: "The metrics file written by `sge train` (JSON lines).")
    var metrics: String

    @Option(name: .shortAndLong, help: "Output PNG path (default: the metrics path with .png).")
    var output: String?

    @Option(help: "Image width in pixels.")
    var width = 1400

    @Option(help: "Image height in pixels.")
    var height = 600

    func run() throws {
        try runCLI {
            let out = output ?? ((metrics as NSString).deletingPathExtension + ".png")
            let records = try MetricsPlot.plot(jsonl: metrics, png: out, width: width, height: height)
            print("wrote \(out) (\(width)x\(height), \(records) records)")
        }
    }
}
