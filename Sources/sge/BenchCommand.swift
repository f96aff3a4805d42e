import ArgumentParser

/// `sge bench ...`: kernel benchmarks timed with OpenCL profiling events.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmark kernels with OpenCL profiling events (ms, GB/s, fraction of the measured copy bandwidth).",
        subcommands: [BenchSuite.self, BenchSGE.self, BenchConv.self, BenchGemm.self, BenchStep.self, BenchData.self],
        defaultSubcommand: BenchSuite.self)
}
