// metrics.jsonl: one JSON object per line, appended as training goes ("kind" "step" every
// --log-every steps, "epoch" after each epoch). `sge plot` and `sge study` read it.
import Foundation
import SGETensor

/// One line of metrics.jsonl. Numbers that can stop being finite (a diverged loss) are written as
/// null; fields a kind does not have are left out.
public struct MetricsLine: Codable, Sendable {
    public var kind: String
    public var epoch, step: Int
    public var trainLoss, trainAccuracy, lr, imagesPerSecond: JSONNumber
    /// Epoch lines: the epoch's wall time and where it went.
    public var seconds, dataWaitSeconds, hostSeconds, deviceWaitSeconds: JSONNumber?
    public var testLoss, testAccuracy: JSONNumber?
    /// Data-parallel epoch lines.
    public var ranks, allReduceBytesPerStep: Int?
    public var allReduceWaitSeconds: JSONNumber?

    /// A step line: the running means of the epoch so far.
    public init(epoch: Int, step: Int, trainLoss: Double, trainAccuracy: Double, lr: Float, imagesPerSecond: Double) {
        (kind, self.epoch, self.step) = ("step", epoch, step)
        (self.trainLoss, self.trainAccuracy) = (JSONNumber(trainLoss), JSONNumber(trainAccuracy))
        (self.lr, self.imagesPerSecond) = (JSONNumber(Double(lr)), JSONNumber(imagesPerSecond))
    }

    /// An epoch line; `ranks` is the number of data-parallel processes (nil: one process).
    public init(_ m: EpochMetrics, ranks: Int?) {
        self.init(epoch: m.epoch, step: m.step, trainLoss: m.trainLoss, trainAccuracy: m.trainAccuracy, lr: m.lr,
                  imagesPerSecond: m.imagesPerSecond)
        kind = "epoch"
        (seconds, dataWaitSeconds) = (JSONNumber(m.seconds), JSONNumber(m.dataWaitSeconds))
        (hostSeconds, deviceWaitSeconds) = (JSONNumber(m.hostSeconds), JSONNumber(m.deviceWaitSeconds))
        if let loss = m.testLoss, let accuracy = m.testAccuracy { (testLoss, testAccuracy) = (JSONNumber(loss), JSONNumber(accuracy)) }
        if let ranks {
            (self.ranks, allReduceBytesPerStep, allReduceWaitSeconds) = (ranks, m.allReduceBytesPerStep, JSONNumber(m.allReduceWaitSeconds))
        }
    }

    enum CodingKeys: String, CodingKey {
        case kind, epoch, step, lr, seconds, ranks
        case trainLoss = "train_loss", trainAccuracy = "train_acc", imagesPerSecond = "images_per_s", testLoss = "test_loss"
        case testAccuracy = "test_acc", dataWaitSeconds = "data_wait_s", hostSeconds = "host_s", deviceWaitSeconds = "device_wait_s"
        case allReduceBytesPerStep = "allreduce_bytes_per_step", allReduceWaitSeconds = "allreduce_wait_s"
    }
}

extension Trainer {
    /// Appends `line` to metrics.jsonl (created with its folder if missing); nothing without a metrics path.
    func appendMetrics(_ line: MetricsLine) throws {
        guard let metricsPath else { return }
        var data = Data(try jsonText(line, pretty: false).utf8)
        data.append(0x0A)
        if !FileManager.default.fileExists(atPath: metricsPath) {
            let dir = URL(fileURLWithPath: metricsPath).deletingLastPathComponent()
            try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            guard FileManager.default.createFile(atPath: metricsPath, contents: nil) else {
                throw SGEError.io(path: metricsPath, reason: "cannot create the metrics file")
            }
        }
        guard let handle = FileHandle(forWritingAtPath: metricsPath) else {
            throw SGEError.io(path: metricsPath, reason: "cannot open the metrics file for appending")
        }
        defer { try? handle.close() }
        do {
            try handle.seekToEnd()
            try handle.write(contentsOf: data)
        } catch {
            throw SGEError.io(path: metricsPath, reason: "cannot append to the metrics file: \(error.localizedDescription)")
        }
    }
}

