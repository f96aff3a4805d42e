import Foundation
import SGENet
import SGETensor

/// A tiny SGE-ResNet and data set small enough for the reference backend in a debug build.
func tinyConfig() -> ResNetConfig {
    ResNetConfig(inputChannels: 1, classes: 3, stem: .small, stemWidth: 4, widths: [4, 8], blocks: [1, 1], groups: [2, 4])
}

/// Structured synthetic data: class k is a bright blob in a class-specific quadrant plus noise.
func tinyDataset(count: Int, seed: UInt64) throws -> Dataset {
    var rng = SeededRNG(seed: seed)
    var images: [Float] = []
    var labels: [Int32] = []
    for i in 0..<count {
        let k = i % 3
        labels.append(Int32(k))
        for y in 0..<8 {
            for x in 0..<8 {
                let inBlob = (k == 0 && x < 4 && y < 4) || (k == 1 && x >= 4 && y < 4) || (k == 2 && y >= 4)
                images.append((inBlob ? 1.5 : -0.5) + 0.3 * rng.normal())
            }
        }
    }
    return try Dataset(images: images, labels: labels, channels: 1, height: 8, width: 8, classNames: ["a", "b", "c"],
                       mean: [0], std: [1], source: "synthetic")
}
