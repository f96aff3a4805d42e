// Evaluation in batches: loss, top-1 and top-k accuracy, confusion matrix.
//
// An image counts as top-k correct when its label's rank r = #{j : z_j > z_label} +
// #{j < label : z_j = z_label} is below k (k = min(5, classes)); with k = 1 this is the argmax
// with ties going to the lower class, as the confusion matrix counts it.
import Foundation
import SGEEngine
import SGETensor

extension Trainer {
    /// Evaluates `data` in order (no augmentation; image folders use their centre crop), calling
    /// `progress(done, total)` after each batch; checks `trainingStopRequested` before every batch
    /// and throws `EvaluationInterrupted` when it is set.
    public static func evaluate(model: SGEResNet, backend: any Backend, data: any LabelledImages, batchSize: Int,
                                progress: ((Int, Int) -> Void)? = nil) throws -> Evaluation {
        guard batchSize > 0 else { throw SGEError.invalidArgument("evaluate: --batch-size \(batchSize) must be at least 1") }
        let k = model.config.classes
        let topK = min(5, k)
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: k), count: k)
        var lossSum = 0.0
        var topKCorrect = 0
        var done = 0
        guard data.classes <= k else {
            throw SGEError.invalidArgument("evaluate: \(data.source) has \(data.classes) classes, the model only \(k)")
        }
        guard data.count > 0 else {
            return Evaluation(loss: 0, accuracy: 0, confusion: confusion, count: 0, topK: topK, topKAccuracy: 0)
        }
        let batches = try data.makeBatches(batchSize: batchSize, shuffle: false, seed: 0, augmentation: .none,
                                           dropLast: false, training: false)
        while true {
            if trainingStopRequested != 0 { throw EvaluationInterrupted(done: done, total: data.count) }
            guard let batch = batches.next() else { break }
            let n = batch.count
            let x = try backend.tensor(batch.images, batch.shape, label: "images")
            let logits = try model.forward(x, training: false)
            let labels = try backend.tensor(batch.labels.map(Float.init), [n], label: "labels")
            let (loss, _, _) = try backend.softmaxCrossEntropy(logits, labels: labels)
            lossSum += Double(try loss.read()[0]) * Double(n)
            let values = try logits.read()
            for i in 0..<n {
                let row = i * k, label = Int(batch.labels[i])
                var best = 0
                for j in 1..<k where values[row + j] > values[row + best] { best = j }
                confusion[label][best] += 1
                let z = values[row + label]
                var rank = 0
                for j in 0..<k where values[row + j] > z || (j < label && values[row + j] == z) { rank += 1 }
                if rank < topK { topKCorrect += 1 }
            }
            done += n
            progress?(done, data.count)
        }
        let correct = (0..<k).reduce(0) { $0 + confusion[$1][$1] }
        return Evaluation(loss: lossSum / Double(max(done, 1)), accuracy: Double(correct) / Double(max(done, 1)),
                          confusion: confusion, count: done, topK: topK, topKAccuracy: Double(topKCorrect) / Double(max(done, 1)),
                          skipped: batches.skipped)
    }
}

/// `sge eval --json`: an evaluation with the checkpoint and class names it was made with. The loss
/// is null when it is not finite (the model's outputs overflowed).
public struct EvaluationReport: Codable, Sendable {
    public var checkpoint: String
    public var count, topK, skipped: Int
    public var loss: JSONNumber
    public var accuracy, top1, top5: Double
    public var perClassAccuracy: [Double]
    public var confusion: [[Int]]
    public var classes: [String]

    public init(_ e: Evaluation, checkpoint: String, classes: [String]) {
        (self.checkpoint, count, topK, skipped, loss) = (checkpoint, e.count, e.topK, e.skipped.count, JSONNumber(e.loss))
        (accuracy, top1, top5, perClassAccuracy, confusion) = (e.accuracy, e.accuracy, e.topKAccuracy, e.perClassAccuracy, e.confusion)
        self.classes = classes
    }

    enum CodingKeys: String, CodingKey {
        case checkpoint, count, skipped, loss, accuracy, top1, top5, confusion, classes
        case topK = "top_k", perClassAccuracy = "per_class_accuracy"
    }
}
