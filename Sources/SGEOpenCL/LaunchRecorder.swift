import COpenCL
import Foundation

/// Counts and times what a context enqueues while it is attached (`CLContext.recorder`): the
/// `launches`, `host_ms` and `device_ms` of `sge bench`'s train_step rows and `SGE_PROFILE=1`.
///
/// A launch is one kernel or one CLBlast call (a CLBlast call may run helper kernels; its event,
/// and so its device time, is that of the last kernel it enqueued). Transfers are counted apart.
/// Blocking calls (reads, finish, event waits) add their wall time to `blockingSeconds`, so a
/// caller can take the host's issuing time as wall time minus blocking time.
public final class LaunchRecorder: @unchecked Sendable {
    public private(set) var launches = 0
    public private(set) var transfers = 0
    public private(set) var blockingSeconds = 0.0
    /// clSetKernelArg calls made (arguments unchanged since a kernel object's last launch are not set again).
    public private(set) var argumentSets = 0
    private var events: [(String, CLEvent)] = []
    /// Keep each launch's event for `deviceMilliseconds()` (costs an event retain per launch).
    public let keepEvents: Bool

    public init(keepEvents: Bool = true) { self.keepEvents = keepEvents }

    func launched(_ name: String, _ event: CLEvent?) {
        launches += 1
        if keepEvents, let event { events.append((name, event)) }
    }

    func transferred() { transfers += 1 }

    func argumentsSet(_ n: Int) { argumentSets += n }

    func blocked(since start: DispatchTime) {
        blockingSeconds += Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
    }

    /// Launches per kernel name (CLBlast calls as "clblast:<routine>").
    public var launchesByName: [String: Int] {
        var counts: [String: Int] = [:]
        for (name, _) in events { counts[name, default: 0] += 1 }
        return counts
    }

    /// Device time of every recorded launch, in total and per name (waits for them first).
    public func deviceMilliseconds() throws -> (total: Double, byName: [String: Double]) {
        var byName: [String: Double] = [:]
        var total = 0.0
        for (name, event) in events {
            let ms = try event.milliseconds()
            byName[name, default: 0] += ms
            total += ms
        }
        return (total, byName)
    }

    /// Device time from the first recorded launch's start to the last one's end (waits for it), or
    /// nil when nothing was recorded or a CLBlast call was: a CLBlast call's event is only its last
    /// kernel's, so a span starting or ending inside one would leave its other kernels out.
    public func spanMilliseconds() throws -> Double? {
        guard keepEvents, let first = events.first, let last = events.last,
              !events.contains(where: { $0.0.hasPrefix("clblast:") }) else { return nil }
        return try CLEvent.span(first.1, last.1)
    }

    /// Forgets everything recorded so far.
    public func reset() {
        launches = 0
        transfers = 0
        argumentSets = 0
        blockingSeconds = 0
        events.removeAll(keepingCapacity: true)
    }
}
