import ArgumentParser
import Foundation
import SGEDistributed
import SGENet

/// The first words of an error line: "sge: error: ", or "sge: rank R: error: " under mpirun with several ranks.
nonisolated(unsafe) var cliErrorPrefix = "sge: error: "
/// Ranks other than 0 print only their device line and errors.
nonisolated(unsafe) var logMuted = false

/// Starts MPI when mpirun launched this process (else a single process, no MPI call), runs `body`,
/// and ends the job: MPI_Finalize after success; after an error on any rank, the message
/// ("sge: rank R: error: ...", printed by runCLI) and MPI_Abort, so every rank exits non-zero at once.
func runDistributed(_ body: (any Communicator) throws -> Void) throws {
    let communicator: any Communicator
    do {
        communicator = try Distributed.start()
    } catch {
        FileHandle.standardError.write(Data("sge: error: cannot start MPI under mpirun: \(error)\n".utf8))
        throw ExitCode(1)
    }
    guard communicator.isDistributed else {
        defer { communicator.finalize() }
        try body(communicator)
        return
    }
    cliErrorPrefix = "sge: rank \(communicator.rank): error: "
    logMuted = communicator.rank != 0
    do {
        try body(communicator)
    } catch let e as ExitCode where e == .success {
        communicator.finalize()
        return
    } catch let e as ExitCode {
        communicator.abort(code: e.rawValue)
    } catch {
        FileHandle.standardError.write(Data("\(cliErrorPrefix)\(error)\n".utf8))
        communicator.abort(code: 1)
    }
    communicator.finalize()
}

/// The end-of-run line about data parallelism.
func dataParallelSummary(_ dp: DataParallel, last: EpochMetrics) -> String {
    return String(format: "%d ranks, %@ all-reduced per step in %d bucket(s)%@; all-reduce wait not hidden behind backward %.1f s in the last epoch",
                  dp.size, formatBytes(UInt64(dp.bytesPerStep)) as NSString, dp.bucketCount,
                  dp.syncBatchNorm == nil ? "" : ", BatchNorm synchronised", last.allReduceWaitSeconds)
}

/// `SGE_PRINT_PARAMETER_HASH=1`: every rank prints a hash of its parameters and buffers (tests use
/// it to check that the ranks hold the same model).
func printParameterHashIfAsked(_ model: SGEResNet, rank: Int) throws {
    guard ProcessInfo.processInfo.environment["SGE_PRINT_PARAMETER_HASH"] == "1" else { return }
    let hash = try DataParallel.parameterHash(model)
    FileHandle.standardError.write(Data("sge: rank \(rank): parameter hash \(String(hash, radix: 16))\n".utf8))
}
