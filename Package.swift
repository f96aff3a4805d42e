// swift-tools-version:6.0
import PackageDescription

/// The OpenCL kernels, embedded into the binary so an installed `sge` needs no source tree.
let kernelFiles = ["reduce_prelude.cl", "elementwise.cl", "bandwidth.cl", "sge_common.cl", "sge_gpu.cl", "sge_gpu_reg.cl", "sge_cpu_hints.cl", "vector_prelude.cl", "sge_cpu.cl", "conv.cl", "conv_cpu.cl", "conv_implicit_cpu.cl", "winograd.cl", "winograd_cpu.cl", "batchnorm_prelude.cl", "batchnorm.cl", "batchnorm_cpu.cl", "batchnorm_gpu.cl", "pool.cl", "pool_cpu.cl", "loss.cl", "optim.cl"]

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
            linkerSettings: [.linkedLibrary("OpenCL"), .linkedLibrary("clblast")]
        ),
        .target(
            name: "CImage",
            path: "Sources/CImage",
            linkerSettings: [.linkedLibrary("turbojpeg"), .linkedLibrary("png"), .linkedLibrary("z")]
        ),
        .target(
            name: "SGEKernels",
            path: "Kernels",
            exclude: ["README.md"],
            resources: kernelFiles.map { .embedInCode($0) }
        ),
        .target(name: "CMPI", path: "Sources/CMPI", linkerSettings: [.linkedLibrary("mpi")]),
        .target(name: "SGETensor"),
        // Open MPI for data-parallel training; without mpirun it makes no MPI call.
        .target(name: "SGEDistributed", dependencies: ["CMPI", "SGETensor"]),
        .target(name: "SGEReference", dependencies: ["SGETensor"]),
        .target(name: "SGEOpenCL", dependencies: ["COpenCL", "SGETensor"], resources: [.embedInCode("ShippedTuning.json")]),
        .target(name: "SGEEngine", dependencies: ["SGEOpenCL", "SGEReference", "SGETensor", "SGEKernels"]),
        .target(name: "SGENet", dependencies: ["SGEEngine", "SGETensor", "CImage", "SGEDistributed"]),
        // The GEMM tuning search (the stored and shipped parameters are applied by SGEOpenCL).
        .target(name: "SGETuning", dependencies: ["SGENet", "SGEOpenCL"]),
        // Benchmarks: timing helpers, probes, the training-step benchmark, Codable bench reports.
        .target(name: "SGEBench", dependencies: ["SGENet", "SGEEngine", "SGEOpenCL", "SGEKernels", "SGETensor"]),
        // Pictures, plots and studies: gate maps, loss curves, the ablation grid (PNG through SGENet).
        .target(name: "SGEViz", dependencies: ["SGENet", "SGEEngine", "SGETensor"]),
        // Test helpers: SGETestSupport (comparison rule, finite differences, fixtures) needs no OpenCL;
        // SGEDeviceTestSupport adds the test device.
        .target(name: "SGETestSupport", dependencies: ["SGETensor"], path: "Sources/SGETestSupport"),
        .target(name: "SGEDeviceTestSupport", dependencies: ["SGETestSupport", "SGEEngine", "SGEOpenCL", "SGETensor"],
                path: "Sources/SGEDeviceTestSupport"),
        .executableTarget(
            name: "sge",
            dependencies: ["SGENet", "SGEViz", "SGEBench", "SGETuning", "SGEDistributed", "SGEEngine", "SGEOpenCL", "SGETensor", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .testTarget(name: "SGETensorTests", dependencies: ["SGETensor", "SGETestSupport"]),
        .testTarget(name: "SGEReferenceTests", dependencies: ["SGEReference", "SGETensor", "SGETestSupport"]),
        .testTarget(name: "SGEOpenCLTests", dependencies: ["SGEOpenCL", "SGEKernels", "SGETensor", "SGEDeviceTestSupport"]),
        .testTarget(name: "SGEEngineTests", dependencies: ["SGEEngine", "SGEKernels", "SGEOpenCL", "SGEReference", "SGETensor", "SGEDeviceTestSupport"]),
        .testTarget(name: "SGETuningTests", dependencies: ["SGETuning", "SGENet", "SGEOpenCL", "SGEDeviceTestSupport"]),
        .testTarget(name: "SGEBenchTests", dependencies: ["SGEBench", "SGETensor", "SGETestSupport"]),
        .testTarget(name: "SGEVizTests", dependencies: ["SGEViz", "SGENet", "SGEEngine", "SGEReference", "SGETensor", "SGEDeviceTestSupport"]),
        .testTarget(name: "SGENetTests", dependencies: ["SGENet", "SGEEngine", "SGEOpenCL", "SGEReference", "SGETensor", "SGEDistributed", "SGEDeviceTestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
