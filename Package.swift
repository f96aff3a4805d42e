// swift-tools-version:6.0
import PackageDescription

/// The OpenCL kernels, embedded into the binary so an installed `sge` needs no source tree.
let kernelFiles = ["reduce_prelude.cl", "elementwise.cl", "bandwidth.cl", "sge.cl", "conv.cl", "batchnorm_prelude.cl", "batchnorm.cl", "batchnorm_cpu.cl", "batchnorm_gpu.cl", "pool.cl", "loss.cl", "optim.cl"]

let package = Package(
    name: "sge",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "sge", targets: ["sge"]),
        .library(name: "SGENet", targets: ["SGENet"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .target(
            name: "COpenCL",
            path: "Sources/COpenCL",
            cSettings: [.define("CL_TARGET_OPENCL_VERSION", to: "120")],
            linkerSettings: [.linkedLibrary("OpenCL"), .linkedLibrary("clblast"), .linkedLibrary("png"), .linkedLibrary("z")]
        ),
        .target(
            name: "SGEKernels",
            path: "Kernels",
            exclude: ["README.md"],
            resources: kernelFiles.map { .embedInCode($0) }
        ),
        .target(name: "CMPI", path: "Sources/CMPI", linkerSettings: [.linkedLibrary("mpi")]),
        .target(name: "SGETensor"),
        .target(name: "SGEDistributed", dependencies: ["CMPI", "SGETensor"]),
        .target(name: "SGEReference", dependencies: ["SGETensor"]),
        .target(name: "SGEOpenCL", dependencies: ["COpenCL", "SGETensor"], resources: [.embedInCode("ShippedTuning.json")]),
        .target(name: "SGEEngine", dependencies: ["SGEOpenCL", "SGEReference", "SGETensor", "SGEKernels"]),
        .target(name: "SGENet", dependencies: ["SGEEngine", "SGEOpenCL", "SGETensor", "COpenCL", "SGEDistributed"]),
        .target(name: "SGETestSupport", dependencies: ["SGEEngine", "SGETensor"], path: "Sources/SGETestSupport"),
        .executableTarget(
            name: "sge",
            dependencies: ["SGENet", "SGEDistributed", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .testTarget(name: "SGETensorTests", dependencies: ["SGETensor", "SGETestSupport"]),
        .testTarget(name: "SGEReferenceTests", dependencies: ["SGEReference", "SGETestSupport"]),
        .testTarget(name: "SGEOpenCLTests", dependencies: ["SGEOpenCL", "SGEKernels", "SGETestSupport"]),
        .testTarget(name: "SGEEngineTests", dependencies: ["SGEEngine", "SGEKernels", "SGEOpenCL", "SGETestSupport"]),
        .testTarget(name: "SGENetTests", dependencies: ["SGENet", "SGETestSupport", "SGEDistributed"]),
    ],
    swiftLanguageModes: [.v5]
)
