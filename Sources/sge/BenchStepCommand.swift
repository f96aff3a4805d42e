import ArgumentParser
import Foundation
import SGEEngine
import SGEBench
import SGENet
import SGETensor

/// `sge bench step`: training steps of a preset on synthetic data, with the host/device split.
struct BenchStep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "step",
        abstract: "Time training steps of a model preset on synthetic data: images/s, launches, host and device time per step.",
        discussion: """
            Each step uploads a synthetic batch, runs forward, softmax cross-entropy, backward and SGD, and reads the \
            loss back, as `sge train` does. Reported per step (medians of the timed steps): wall ms and images/s; \
            host_ms, the host thread's time issuing the step less any blocking inside it, and host_cpu_ms, the CPU \
            time that thread used meanwhile (below host_ms where it waited for a core the driver's threads held); device_ms, the summed \
            OpenCL profiling-event times of every kernel and CLBlast call; launches, the kernels and CLBlast calls \
            enqueued. host_ms above device_ms means the step is bound by the host. Memory: peak device buffers over \
            the run and in the last timed step, the step memory plan's arena against the bytes its requests \
            would take without reuse, requests that fell back to the pool, and device buffers and host tensor \
            storages allocated per timed step (SGE_MEMORY_PLAN=0 turns the plan off). --kernels lists the device time \
            and launches per kernel name. --json prints one `sge bench` row (op train_step) as a one-row report.
            """)

    @OptionGroup var options: DeviceOptions
    @Option(help: "Model preset: small, resnet20, resnet18, resnet34, resnet50 or resnet101.") var model = "small"
    @Option(help: "Base width of the ImageNet presets (default 64).") var width: Int?
    @Option(help: "SGE groups: one number for every stage or one per stage (default: the preset's).") var groups: String?
    @Option(help: "Classes of the synthetic task (the fc layer's outputs).") var classes = 10
    @Option(help: "Images per step.") var batchSize = 128
    @Option(help: "Image height and width (default: 28 for small, 32 for resnet20, 224 for the ImageNet presets).") var imageSize: Int?
    @Option(help: "Input channels (default: 1 for small, 3 otherwise).") var channels: Int?
    @Option(help: "Timed steps.") var steps = 10
    @Option(help: "Untimed warm-up steps (the first builds kernels).") var warmup = 3
    @Flag(help: "List device time and launches per kernel name.") var kernels = false
    @Flag(help: "Print a JSON report instead of text.") var json = false

    func run() throws {
        try runCLI {
            let choice = try options.choose(quiet: json)
            let bench = try StepBenchmark(backend: choice.backend, model: model, batch: batchSize, imageSize: imageSize, channels: channels,
                                         classes: classes, width: width, groups: try groups.map { try parseInts($0, "--groups") })
            let r = try bench.run(warmup: warmup, steps: steps)
            let stats = BenchTiming.Stats(r.wallMs)
            var row = BenchRow(op: "train_step", direction: "step", shape: r.shapeLabel, ms: stats.median, msMin: stats.min, msMax: stats.max,
                               imagesPerSecond: r.imagesPerSecond, unit: "images/s", timer: "wall")
            row.launches = r.launches
            row.hostMs = r.hostMs.isEmpty ? nil : median(r.hostMs)
            row.hostCpuMs = r.hostCpuMs.isEmpty ? nil : median(r.hostCpuMs)
            row.deviceMs = r.deviceMs.isEmpty ? nil : median(r.deviceMs)
            row.peakHostMiB = r.peakHostBytes.map { Double($0) / 1_048_576 }
            row.addMemoryPlan(r)
            if json {
                let info = choice.info
                let report = BenchReport(device: choice.backend.name, platform: info?.platformName ?? "reference",
                                         driver: info?.driverVersion ?? sgeVersion, sgeVersion: sgeVersion, rows: [row])
                print(String(decoding: try report.json(), as: UTF8.self))
                return
            }
            print(String(format: "%@: %.1f images/s, %.2f ms per step (min %.2f, max %.2f; %d timed after %d warm-up)",
                         r.shapeLabel as NSString, r.imagesPerSecond, stats.median, stats.min, stats.max, steps, warmup))
            if let launches = r.launches, let host = row.hostMs, let device = row.deviceMs {
                print(String(format: "per step: %d launches (+%d transfers), host %.2f ms issuing (%.2f ms of CPU), device %.2f ms (kernel events): %@",
                             launches, r.transfers ?? 0, host, row.hostCpuMs ?? .nan, device,
                             (host > device ? "host-bound" : "device-bound") as NSString))
            }
            let mib = { (b: Int) in String(format: "%.0f MiB", Double(b) / 1_048_576) }
            print("peak memory: " + [r.peakDeviceBytes.map { "device buffers \(mib($0))" }, r.peakHostBytes.map { "host resident \(mib($0))" }]
                .compactMap { $0 }.joined(separator: ", ") + (r.stepPeakDeviceBytes.map { "; device buffers in the last step \(mib($0))" } ?? ""))
            if let plan = r.plan {
                let list = { (v: [Int]) in v.map(String.init).joined(separator: " ") }
                let perStep = "per timed step: device buffers created \(list(r.deviceAllocations)), "
                    + "host tensor storages allocated \(list(r.hostStorageAllocations)), kernel arguments set \(list(r.argumentSets))"
                if plan.plansMade > 0 {
                    print(String(format: "memory plan: arena %.1f MiB for %d buffers (requested %.1f MiB, peak live %.1f MiB); %d requests "
                                 + "planned, %d fell back to the pool (%d size mismatches, %d regions still held); ",
                                 Double(plan.arenaBytes) / 1_048_576, plan.slots, Double(plan.requestedBytes) / 1_048_576,
                                 Double(plan.peakLiveBytes) / 1_048_576, plan.planned, plan.fallbacks + plan.conflicts, plan.fallbacks,
                                 plan.conflicts) + perStep)
                } else {
                    print(String(format: "memory plan: none (SGE_MEMORY_PLAN=0 or no stable step); a step requests %d buffers, %.1f MiB; ",
                                 plan.stepRequests, Double(plan.stepRequestedBytes) / 1_048_576) + perStep)
                }
            }
            if kernels {
                let width = max(r.perKernel.map(\.name.count).max() ?? 0, 6) + 2
                func padded(_ s: String) -> String { pad(s, width) }
                print(padded("kernel") + "launches   device ms   share")
                let total = max(r.perKernel.reduce(0) { $0 + $1.deviceMs }, 1e-12)
                for k in r.perKernel {
                    print(padded(k.name) + String(format: "%8d %11.3f  %5.1f%%", k.launches, k.deviceMs, 100 * k.deviceMs / total))
                }
            }
        }
    }
}
