import ArgumentParser
import Foundation
import SGEEngine
import SGENet
import SGEViz
import SGETensor

struct VisualizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "visualize",
        abstract: "SGE gate maps of a checkpoint as PNG grids, and per-group gate statistics.",
        discussion: """
            For every SGE layer writes OUT/<layer>.png (e.g. layer2.0.sge.png): one row per test image with the \
            input and, for each group, the gate sigmoid(a) upsampled bilinearly to the image size as a viridis \
            heatmap (fixed 0-1 scale) over the image. Then computes per-group gate statistics over the test set \
            (or the first --stats-images): mean and std over positions and images, and the spatial spread (std over \
            positions within an image, averaged over images); prints them and writes OUT/gate_stats.json and .md.
            """)

    @OptionGroup var device: DeviceOptions
    @OptionGroup var data: DataOptions
    @Argument(help: "A checkpoint written by `sge train`, or a PyTorch state_dict as safetensors (with --model).") var checkpoint: String
    @Option(help: "With a PyTorch state_dict: the network (resnet18, resnet34, resnet50, resnet101, small, resnet20).") var model: String?
    @Option(help: "Number of test images in the grids.") var images = 8
    @Option(help: "Output directory (default: the checkpoint's directory + /visualize).") var out: String?
    @Option(name: .customLong("stats-images"), help: "Gate statistics over the first M test images (default: all).") var statsImages: Int?
    @Option(name: .customLong("batch-size"), help: "Batch size for the statistics pass.") var batchSize = 250
    @Flag(help: "Stretch each layer's colour scale to its gate range in the shown images (default: fixed 0-1).") var stretch = false

    func run() throws {
        try runCLI {
            guard images > 0 else { throw SGEError.invalidArgument("--images \(images): must be positive") }
            if let m = statsImages, m < 0 { throw SGEError.invalidArgument("--stats-images \(m): must be ≥ 0") }
            let dir = out ?? (((checkpoint as NSString).deletingLastPathComponent as NSString).appendingPathComponent("visualize"))
            try RunFolder.checkWritable(dir)  // before the model runs, not after the grids
            let choice = try device.choose()
            warnIfReference(choice.backend, work: "the gate statistics pass")
            let model = try Visualize.loadModel(checkpoint: checkpoint, model: self.model, backend: choice.backend)
            let test = try data.load(train: false)
            let paths = try Visualize.writeGrids(model: model, backend: choice.backend, data: test, count: images, outDir: dir, stretch: stretch)
            for p in paths { print("wrote \(p)") }
            guard statsImages != 0 else { return }
            let start = Date()
            let stats = try Visualize.gateStatistics(model: model, backend: choice.backend, data: test, limit: statsImages, batchSize: batchSize)
            log(String(format: "gate statistics over %d images in %.1f s", stats.first?.images ?? 0, Date().timeIntervalSince(start)))
            print("")
            print("layer".padding(toLength: 16, withPad: " ", startingAt: 0) + " group   weight     bias   mean    std  spread")
            for layer in stats {
                for g in layer.groupStats {
                    print(layer.layer.padding(toLength: 16, withPad: " ", startingAt: 0)
                          + String(format: " %5d %8.4f %8.4f %6.4f %6.4f %6.4f", g.group, g.weight, g.bias, g.mean, g.std, g.spatialSpread))
                }
            }
            let json = (dir as NSString).appendingPathComponent("gate_stats.json")
            let md = (dir as NSString).appendingPathComponent("gate_stats.md")
            let extra = ["checkpoint": checkpoint, "dataset": test.source]
            try AtomicFile.write(try Visualize.statsJSON(stats, extra: extra), to: json)
            try AtomicFile.write(Data(Visualize.statsMarkdown(stats, title: "SGE gate statistics: \(checkpoint)").utf8), to: md)
            print("\nwrote \(json)\nwrote \(md)")
        }
    }
}
