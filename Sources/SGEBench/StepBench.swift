import Foundation
import SGENet
import SGEEngine
import SGEOpenCL
import SGETensor

/// Timed training steps of any model on synthetic data: `sge bench step` and the suite's
/// train_step rows.
///
/// Each timed step uploads a batch, runs forward, loss, backward and SGD, and reads the loss back
/// (as `sge train` does every step). Per step it records:
/// - wall time, from the first enqueue to the loss on the host (images/s = batch / median wall);
/// - `hostMs`: the host thread's time issuing the step (upload to the last enqueue), less any time
///   it blocked inside (reads, finish);
/// - `hostCpuMs`: the CPU time the host thread used over the same span (its thread CPU clock): where
///   the driver's worker threads share the cores with it (PoCL), hostMs also counts the time it waited
///   for a core, and hostCpuMs is the work itself;
/// - `deviceMs`: the sum of the device times of every kernel and CLBlast call (profiling events);
/// - `launches`: kernels and CLBlast calls enqueued, and `transfers` (host<->device copies).
/// A device-bound step has hostMs < deviceMs; a host-bound one the reverse.
public struct StepBenchmark {
    public struct Result: Sendable {
        public var model: String
        public var batch: Int
        public var inputShape: [Int]
        /// Per timed step, in milliseconds.
        public var wallMs: [Double]
        public var hostMs: [Double]
        public var hostCpuMs: [Double] = []
        public var deviceMs: [Double]
        public var launches: Int?
        public var transfers: Int?
        /// clSetKernelArg calls per timed step (0 once every launch site keeps its arguments bound).
        public var argumentSets: [Int] = []
        /// Device buffers at their peak during the run (OpenCL backends; nil on the reference), and
        /// the process's peak resident host memory, in bytes.
        public var peakDeviceBytes: Int?
        public var peakHostBytes: Int?
        /// Device buffers at their peak during the last timed step (after `warmup` + `steps` - 1 steps
        /// the memory plan, if any, is in use; the pool's kept buffers count as before).
        public var stepPeakDeviceBytes: Int?
        /// Per timed step: cl_mem objects created (buffers and sub-buffers) and host tensor storages
        /// allocated (`Tensor.hostStorageAllocations`).
        public var deviceAllocations: [Int] = []
        public var hostStorageAllocations: [Int] = []
        /// The step memory plan's counters after the run (OpenCL backends).
        public var plan: StepMemory.Stats?
        /// Launches and device milliseconds of one step per kernel name (largest device time first).
        public var perKernel: [(name: String, launches: Int, deviceMs: Double)]
        public var imagesPerSecond: Double { Double(batch) / median(wallMs) * 1e3 }
        /// "small b128 1x28x28": model name, batch, one image's shape.
        public var shapeLabel: String { "\(model) b\(batch) " + inputShape.map(String.init).joined(separator: "x") }
    }

    public let backend: any Backend
    public let model: String
    public let config: ResNetConfig
    public let batch: Int
    public let height: Int
    public let width: Int

    /// `model` is a preset name (`ResNetConfig.preset`); `imageSize` defaults to the preset's
    /// (28 for small, 32 for resnet20, 224 for the ImageNet presets); `width` is the ImageNet
    /// presets' base width.
    public init(backend: any Backend, model: String, batch: Int, imageSize: Int? = nil, channels: Int? = nil, classes: Int = 10,
                width: Int? = nil, groups: [Int]? = nil) throws {
        guard batch >= 1 else { throw SGEError.invalidArgument("bench step: --batch-size must be ≥ 1, got \(batch)") }
        let imagenet = ResNetConfig.imagenetPresets[model] != nil
        let size = imageSize ?? (model == "small" ? 28 : imagenet ? 224 : 32)
        guard size >= 4 else { throw SGEError.invalidArgument("bench step: --image-size must be ≥ 4, got \(size)") }
        let c = channels ?? (model == "small" ? 1 : 3)
        var config = try ResNetConfig.preset(model, channels: c, height: size, classes: classes, width: width)
        if let groups { config.groups = groups.count == 1 ? [Int](repeating: groups[0], count: config.widths.count) : groups }
        self.config = config
        try config.validate()
        self.backend = backend
        self.model = model
        self.batch = batch
        (self.height, self.width) = (size, size)
    }

    /// Runs `warmup` untimed steps, then `steps` timed ones.
    public func run(warmup: Int, steps: Int, seed: UInt64 = 1) throws -> Result {
        (backend as? OpenCLBackend)?.device.resetPeakBytes()
        guard steps >= 1, warmup >= 0 else { throw SGEError.invalidArgument("bench step: --steps must be ≥ 1 and --warmup ≥ 0") }
        let net = try SGEResNet(backend, config: config, seed: seed)
        let sgd = try SGD(backend, parameters: net.namedParameters)
        let shape: Shape = [batch, config.inputChannels, height, width]
        var rng = SeededRNG(seed: seed &+ 1)
        let images = rng.uniforms(shape.count)
        let labels = (0..<batch).map { Float($0 % config.classes) }
        let context = (backend as? OpenCLBackend)?.device
        var result = Result(model: model, batch: batch, inputShape: [config.inputChannels, height, width], wallMs: [], hostMs: [],
                            deviceMs: [], launches: nil, transfers: nil, peakDeviceBytes: nil, peakHostBytes: nil, perKernel: [])
        defer { context?.recorder = nil }
        // The batch's tensors are kept and rewritten every step (as `Trainer` does), so a step
        // allocates no host storage for them; the step's buffers follow the memory plan of this key.
        let x = try backend.tensor(images, shape, label: "images")
        let y = try backend.tensor(labels, [batch], label: "labels")
        let key = "bench \(model) \(shape)"
        var runPeak = 0
        for i in 0..<(warmup + steps) {
            try backend.synchronize()
            if i == warmup + steps - 1, let context {
                runPeak = context.deviceBytes.peak
                context.resetPeakBytes()
            }
            let (devices0, hosts0) = (context?.deviceAllocations ?? 0, Tensor.hostStorageAllocations)
            let recorder = context.map { _ in LaunchRecorder() }
            context?.recorder = recorder
            let t0 = DispatchTime.now().uptimeNanoseconds
            let cpu0 = threadCPUNanoseconds()
            backend.beginStep(key)
            let value: Float
            do {
                defer { backend.endStep() }
                try x.write(images)
                try y.write(labels)
                try x.prefetchToDevice()
                let (loss, _) = try net.trainStep(x, labels: y, optimizer: sgd, lr: 0.01)
                var v: Float = 0
                let t1 = DispatchTime.now().uptimeNanoseconds
                let cpu1 = threadCPUNanoseconds()
                let blockedWhileIssuing = recorder?.blockingSeconds ?? 0
                try withUnsafeMutablePointer(to: &v) { try loss.read(into: UnsafeMutableBufferPointer(start: $0, count: 1)) }
                value = v
                let t2 = DispatchTime.now().uptimeNanoseconds
                if i >= warmup {
                    result.wallMs.append(Double(t2 - t0) / 1e6)
                    result.hostMs.append(Double(t1 - t0) / 1e6 - blockedWhileIssuing * 1e3)
                    result.hostCpuMs.append(Double(cpu1 &- cpu0) / 1e6)
                }
            }
            context?.recorder = nil
            guard value.isFinite else { throw SGEError.numeric("bench step: the training step's loss is \(value)") }
            guard i >= warmup else { continue }
            result.deviceAllocations.append((context?.deviceAllocations ?? 0) - devices0)
            result.hostStorageAllocations.append(Tensor.hostStorageAllocations - hosts0)
            if let recorder {
                let device = try recorder.deviceMilliseconds()
                result.deviceMs.append(device.total)
                result.launches = recorder.launches
                result.transfers = recorder.transfers
                result.argumentSets.append(recorder.argumentSets)
                let counts = recorder.launchesByName
                result.perKernel = device.byName.map { (name: $0.key, launches: counts[$0.key] ?? 0, deviceMs: $0.value) }
                    .sorted { $0.deviceMs > $1.deviceMs }
            }
        }
        if let context {
            result.stepPeakDeviceBytes = context.deviceBytes.peak
            result.peakDeviceBytes = max(runPeak, context.deviceBytes.peak)
            result.plan = StepMemory.of(context).stats
        }
        result.peakHostBytes = peakResidentBytes()
        return result
    }
}

extension BenchRow {
    /// Fills the step memory plan's fields from a step benchmark's result.
    public mutating func addMemoryPlan(_ r: StepBenchmark.Result) {
        peakDeviceMiB = r.peakDeviceBytes.map { Double($0) / 1_048_576 }
        stepPeakDeviceMiB = r.stepPeakDeviceBytes.map { Double($0) / 1_048_576 }
        deviceAllocationsPerStep = r.deviceAllocations.last
        hostAllocationsPerStep = r.hostStorageAllocations.last
        kernelArgsSetPerStep = r.argumentSets.last
        if let plan = r.plan, plan.plansMade > 0 {
            planArenaMiB = Double(plan.arenaBytes) / 1_048_576
            planRequestedMiB = Double(plan.requestedBytes) / 1_048_576
            planFallbacks = plan.fallbacks + plan.conflicts
        }
    }
}

/// The median of `values` (the upper middle one for an even count; NaN when empty).
public func median(_ values: [Double]) -> Double {
    let s = values.sorted()
    return s.isEmpty ? .nan : s[s.count / 2]
}

/// The calling thread's CPU time in nanoseconds (CLOCK_THREAD_CPUTIME_ID; 0 where unavailable).
public func threadCPUNanoseconds() -> UInt64 {
    var t = timespec()
    guard clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) == 0 else { return 0 }
    return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
}

/// The process's peak resident memory in bytes (getrusage; Linux reports KiB, macOS bytes).
public func peakResidentBytes() -> Int {
    var usage = rusage()
    #if os(macOS)
    guard getrusage(RUSAGE_SELF, &usage) == 0 else { return 0 }
    return Int(usage.ru_maxrss)
    #else
    guard getrusage(RUSAGE_SELF.rawValue, &usage) == 0 else { return 0 }
    return Int(usage.ru_maxrss) * 1024
    #endif
}
