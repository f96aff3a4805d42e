import ArgumentParser
import Foundation
import SGEBench
import SGENet
import SGETensor

/// `sge bench data`: image-folder decoding + augmentation throughput, per thread and in total.
struct BenchData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Images per second that the image-folder loader decodes and augments, per thread and in total.",
        discussion: """
            Reads DIR/train (or DIR itself when it holds class folders) through the same loader as training: \
            JPEG/PNG decoding, RandomResizedCrop + flip (or with --eval the evaluation resize + centre crop), \
            normalisation, batching. Runs once with 1 thread and once with --threads. --generate N first writes N \
            synthetic JPEGs of --generate-size into DIR/train and DIR/val (10 classes), for a reproducible measurement.
            """)

    @Option(help: "Image folder (with train/, or class folders directly).") var data: String
    @Option(name: .customLong("image-size"), help: "Output crop size.") var imageSize = 224
    @Option(help: "Loader threads for the total (default: cores - 1, at least 1).") var threads: Int?
    @Option(help: "Decode at most this many images per run (default: all).") var images: Int?
    @Option(name: .customLong("batch-size"), help: "Batch size.") var batchSize = 32
    @Flag(help: "Measure the evaluation transform instead of the training augmentation.") var eval = false
    @Option(help: "First generate this many JPEGs (10 classes) into DIR/train and DIR/val.") var generate: Int?
    @Option(name: .customLong("generate-size"), help: "Size of generated images, WxH.") var generateSize = "500x375"
    @Flag(help: "Print the result as JSON.") var json = false

    func run() throws {
        try runCLI {
            let threads = self.threads ?? ImageFolder.defaultThreads
            guard threads >= 1 else { throw SGEError.invalidArgument("--threads \(threads): must be at least 1") }
            if let n = generate {
                let parts = generateSize.split(separator: "x").compactMap { Int($0) }
                guard n >= 10, parts.count == 2, parts[0] >= 8, parts[1] >= 8 else {
                    throw SGEError.invalidArgument("--generate \(n) --generate-size \(generateSize): need at least 10 images of WxH ≥ 8x8")
                }
                let start = Date()
                try ImageFolderGenerator.write(dir: data, classes: 10, perClass: n / 10, sizes: [(parts[0], parts[1])], quality: 90)
                if !json { log(String(format: "wrote %d %@ JPEGs per split into %@ in %.1f s", n / 10 * 10, generateSize, data, Date().timeIntervalSince(start))) }
            }
            let split = FileManager.default.fileExists(atPath: (data as NSString).appendingPathComponent("train")) ? "train" : ""
            var runs: [DataBenchReport.Run] = []
            for t in threads == 1 ? [1] : [1, threads] {
                var folder = try ImageFolder(dir: data, split: split, imageSize: imageSize, threads: t)
                if let images { folder = folder.prefix(images) }
                let loader = try ImageFolderLoader(folder: folder, batchSize: min(batchSize, folder.count), shuffle: true, seed: 1,
                                                   augment: !eval, dropLast: false)
                let start = Date()
                var count = 0
                while let batch = loader.next() { count += batch.count }
                let run = DataBenchReport.Run(threads: t, images: count, seconds: Date().timeIntervalSince(start), skipped: loader.skipped.count)
                runs.append(run)
                if !json {
                    print(String(format: "%2d thread%@: %5d images in %6.2f s: %7.1f images/s total, %6.1f images/s per thread (%@, %d²)",
                                 t, t == 1 ? " " : "s", count, run.seconds, run.imagesPerSecond, run.imagesPerSecondPerThread,
                                 eval ? "eval resize + centre crop" : "RandomResizedCrop + flip", imageSize))
                }
                if let warning = loader.skipped.warning("bench data") { log(warning) }
            }
            if json {
                print(try jsonText(DataBenchReport(data: data, imageSize: imageSize, transform: eval ? "eval" : "train",
                                                   cores: ProcessInfo.processInfo.activeProcessorCount, runs: runs), pretty: false))
            }
        }
    }
}
