import Foundation
import SGEEngine
import SGENet

/// Ctrl-C for long commands: the first one is acknowledged at once (from the handler, with
/// write(2), which is async-signal-safe) and sets `trainingStopRequested`, so training stops after
/// its current step and evaluation after its current batch; a second one quits at once (130).
/// SIGTERM (which mpirun sends every rank on Ctrl-C, SIGKILL following) is handled the same way.
func installStopHandler() {
    let handler: @convention(c) (Int32) -> Void = { _ in
        if trainingStopRequested != 0 { _exit(130) }
        trainingStopRequested = 1
        let message: StaticString = "\nsge: Ctrl-C: stopping after the current step or evaluation batch (Ctrl-C again quits at once)\n"
        _ = write(STDERR_FILENO, message.utf8Start, message.utf8CodeUnitCount)
    }
    signal(SIGINT, handler)
    signal(SIGTERM, handler)
}

/// Says so when the reference backend runs a whole model: it is correct but slow.
func warnIfReference(_ backend: any Backend, work: String) {
    if backend is ReferenceBackend {
        log("the reference backend is the plain-Swift CPU specification, far slower than any OpenCL device (\(work) may take minutes); "
            + "progress is shown as it goes (install an OpenCL driver such as pocl-opencl-icd for speed)")
    }
}

/// Evaluation progress on stderr: a rewritten line on a terminal, a line every 15 s otherwise.
final class EvaluationProgress {
    let isTTY = isatty(STDERR_FILENO) != 0
    let start = Date()
    var lastPlain = Date()
    var printed = false

    func update(done: Int, total: Int) {
        let elapsed = Date().timeIntervalSince(start)
        let eta = done > 0 ? formatDuration(elapsed / Double(done) * Double(total - done)) : "?"
        let line = String(format: "evaluating: %d/%d images (%.0f%%), ETA %@", done, total, 100 * Double(done) / Double(max(total, 1)), eta)
        if isTTY {
            FileHandle.standardError.write(Data("\r\u{1B}[2K\(line)".utf8))
            printed = true
        } else if Date().timeIntervalSince(lastPlain) >= 15 {
            lastPlain = Date()
            FileHandle.standardError.write(Data("\(line)\n".utf8))
        }
    }

    /// Ends the rewritten line (call before printing anything else).
    func finish() {
        if isTTY && printed { FileHandle.standardError.write(Data("\r\u{1B}[2K".utf8)) }
        printed = false
    }
}
