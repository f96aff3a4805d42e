import ArgumentParser
import Foundation
import SGEEngine
import SGEOpenCL

struct Devices: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List OpenCL devices and the reference backend, and show which one is selected.",
        discussion: "The selected device is marked with '*'. Select with --device or SGE_DEVICE (see `sge --help`).")

    @OptionGroup var options: DeviceOptions

    func run() throws {
        try runCLI {
            let devices = try SGEOpenCL.Devices.all()
            let (selected, reason) = try DeviceSelection.resolve(DeviceSelection.spec(options.device), devices: devices)
            if devices.isEmpty { print("No OpenCL platform or device found (is an ICD such as pocl-opencl-icd installed?).\n") }
            for d in devices {
                let mark = selected?.globalIndex == d.globalIndex ? "*" : " "
                print("\(mark) \(d.globalIndex): \(d.name)")
                print("      platform:        \(d.platformName)")
                print("      type:            \(d.typeName)")
                print("      vendor:          \(d.vendor)")
                print("      driver:          \(d.driverVersion)")
                print("      version:         \(d.deviceVersion), \(d.openCLCVersion)")
                print("      compute units:   \(d.computeUnits) @ \(d.clockMHz) MHz")
                print("      global memory:   \(formatBytes(d.globalMemory)) (max allocation \(formatBytes(d.maxAllocation)), cache \(formatBytes(d.globalMemCacheSize)))")
                print("      local memory:    \(formatBytes(d.localMemory))")
                print("      max work-group:  \(d.maxWorkGroupSize)")
                print("      float vector:    \(d.nativeFloatVectorWidth) (native width); shipped tuning class: \(ShippedTuning.embedded.match(d)?.name ?? "none")")
            }
            let mark = selected == nil ? "*" : " "
            print("\(mark) reference: pure-Swift CPU backend (Double accumulation; the specification)")
            print("")
            print("selected: \(selected.map { "\($0.globalIndex): \($0.name)" } ?? "reference") (\(reason))")
        }
    }
}

func formatBytes(_ b: UInt64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(b)
    var i = 0
    while v >= 1024, i < units.count - 1 { v /= 1024; i += 1 }
    return i == 0 ? "\(b) B" : String(format: "%.1f %@", v, units[i])
}
