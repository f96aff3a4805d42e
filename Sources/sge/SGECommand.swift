import ArgumentParser
import Foundation
import SGEEngine
import SGEOpenCL
import SGETensor

@main
struct SGECommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sge",
        abstract: "Train and benchmark Spatial Group-wise Enhance networks on any OpenCL device.",
        discussion: """
            Device selection for every command: --device N (index from `sge devices`), --device NAME \
            (substring of the device name), or --device reference (the pure-Swift CPU backend); \
            the SGE_DEVICE environment variable does the same. Default: the first GPU, else the first \
            OpenCL device (PoCL on a machine without a GPU), else the reference backend.
            """,
        version: sgeVersion,
        subcommands: [Devices.self, Train.self, Eval.self, CheckGolden.self, Validate.self, Bench.self, Tune.self, PlotCommand.self,
                      VisualizeCommand.self, StudyCommand.self, Infer.self, Import.self]
    )
}

let sgeVersion = "0.1.0"

/// The `--device` option shared by every command that computes.
struct DeviceOptions: ParsableArguments {
    @Option(name: .long, help: "Device: index, name substring, or 'reference'. Default: $SGE_DEVICE, else first GPU, else first OpenCL device, else reference.")
    var device: String?

    /// `localRank`: under mpirun, the default is that rank's GPU; `rank` labels the device line.
    func choose(quiet: Bool = false, localRank: Int = 0, rank: Int? = nil) throws -> DeviceSelection.Choice {
        let choice = try DeviceSelection.choose(device, localRank: localRank)
        if !quiet {
            let what = choice.info.map { "\($0.globalIndex): \($0.name) (\($0.platformName))" } ?? "reference (pure-Swift CPU backend)"
            FileHandle.standardError.write(Data("sge: \(rank.map { "rank \($0): " } ?? "")device \(what) — \(choice.reason)\n".utf8))
        }
        return choice
    }
}

/// Runs `body`, turning any error into a one-line message and exit code 1 (2 for usage errors).
func runCLI(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as ExitCode {
        throw e
    } catch let e as SGEError {
        FileHandle.standardError.write(Data("\(cliErrorPrefix)\(e.description)\n".utf8))
        if case .invalidArgument = e { throw ExitCode(2) }
        throw ExitCode(1)
    } catch {
        FileHandle.standardError.write(Data("\(cliErrorPrefix)\(error)\n".utf8))
        throw ExitCode(1)
    }
}
