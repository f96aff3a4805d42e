// swift-tools-version:6.1
import PackageDescription

// The ordo-one/package-benchmark suite, as its own package that depends on sge by path, so that
// `swift build` / `swift test` at the repository root never fetch or compile the benchmark
// framework. Run from this directory:  swift package benchmark
// (or `swift package benchmark --target SGEBenchmarks`). The malloc-interposer / runtime-interposer
// traits are off (`traits: []`): no jemalloc or extra system library is needed, at the cost of the
// malloc-count metrics, which these benchmarks do not use.
let package = Package(
    name: "sge-benchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(name: "sge", path: ".."),
        .package(url: "https://github.com/ordo-one/package-benchmark", from: "1.38.1", traits: []),
    ],
    targets: [
        .executableTarget(
            name: "SGEBenchmarks",
            dependencies: [
                .product(name: "SGENet", package: "sge"),
                .product(name: "Benchmark", package: "package-benchmark"),
            ],
            path: "SGEBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
    ],
    swiftLanguageModes: [.v5]
)
