import ArgumentParser
import Foundation
import SGEBench
import SGEEngine
import SGETensor

/// `sge check-golden FILE...`: SGE forward and backward against PyTorch float64 golden files.
struct CheckGolden: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-golden",
        abstract: "Check SGE forward/backward on the selected device and the reference backend against golden files.",
        discussion: """
            Each FILE is an SGE golden .safetensors file (x, grad_out, weight, bias, out, grad_x, grad_weight, \
            grad_bias; metadata groups and f32_err_<tensor>; see Tests/Fixtures/golden/README.md). Forward runs \
            with normalisation, backward from zeroed weight/bias gradients. For every tensor and backend it \
            prints the max abs and max rel error, the file's f32_err and the tolerance.
            Tolerance rule: \(SGEGolden.ruleDescription)
            NaN or Inf on either side fails; a file whose f32_err is not a finite number >= 0 is rejected as invalid. \
            Exits with status 1 if any comparison fails.
            """)

    @OptionGroup var options: DeviceOptions

    @Argument(help: "Golden .safetensors files.")
    var files: [String]

    func run() throws {
        try runCLI {
            let choice = try options.choose()
            var backends: [(String, any Backend)] = []
            if let info = choice.info { backends.append(("\(info.globalIndex): \(info.name)", choice.backend)) }
            backends.append(("reference", ReferenceBackend()))
            var failures = 0
            for path in files {
                let c = try SGEGolden.Case.load(path: path)
                print("\(path): x \(c.x.shape), groups \(c.groups)")
                print("  " + pad("tensor", 12) + " " + pad("backend", 10) + ["max abs", "max rel", "f32_err", "tolerance"].map { pad($0, 11, left: true) }.joined(separator: " ") + "  result")
                for (label, backend) in backends {
                    let results = try SGEGolden.check(c, on: backend)
                    let short = label == "reference" ? "reference" : "device"
                    for r in results {
                        if !r.passed { failures += 1 }
                        print("  " + pad(r.name, 12) + " " + pad(short, 10) + String(format: "%11.3e %11.3e %11.3e %11.3e", r.maxAbs, r.maxRel, r.f32Err, r.tolerance)
                              + "  " + (r.passed ? "PASS" : "FAIL"))
                        if !r.passed { print("      " + r.problem) }
                    }
                }
            }
            if let info = choice.info { print("device: \(info.globalIndex): \(info.name)") }
            if failures > 0 {
                print("\(failures) comparison(s) FAILED")
                throw ExitCode(1)
            }
            print("all PASS")
        }
    }
}

