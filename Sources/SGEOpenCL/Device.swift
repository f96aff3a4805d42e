import COpenCL
import Foundation

/// What a user needs to know about an OpenCL device, read once at discovery.
public struct DeviceInfo: @unchecked Sendable, CustomStringConvertible {
    public let platformIndex: Int
    public let deviceIndex: Int
    /// Position in the flattened list of all devices of all platforms (what `--device N` selects).
    public let globalIndex: Int
    public let platformName: String
    public let name: String
    public let vendor: String
    public let driverVersion: String
    public let deviceVersion: String
    public let openCLCVersion: String
    public let isGPU: Bool
    public let typeName: String
    public let computeUnits: Int
    public let clockMHz: Int
    public let globalMemory: UInt64
    public let localMemory: UInt64
    public let maxWorkGroupSize: Int
    public let maxAllocation: UInt64
    /// CL_DEVICE_GLOBAL_MEM_CACHE_SIZE: the last-level cache in front of global memory (0 if none).
    public let globalMemCacheSize: UInt64
    /// CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT: floats per native vector (PoCL: 16 with AVX-512, 8 with
    /// AVX2, 4 with SSE; GPUs usually 1).
    public let nativeFloatVectorWidth: Int
    public let extensions: String
    let platformID: cl_platform_id
    let deviceID: cl_device_id

    public var description: String { "\(name) [\(platformName), driver \(driverVersion)]" }

    /// A stable identity for caches: platform, device, driver.
    public var cacheIdentity: String { "\(platformName)|\(name)|\(vendor)|\(driverVersion)|\(deviceVersion)" }
}

extension DeviceInfo {
    /// Bytes per buffer for a bandwidth reference (the benchmarks' copy): at least 64 MiB and 4x the
    /// cache in front of global memory (STREAM's rule, so the copy measures memory rather than the
    /// cache), within the allocation limits (max allocation, a quarter of global memory, 4 GiB),
    /// in whole MiB. On this project's VM PoCL reports a 260 MiB cache: a 64 MiB copy measured
    /// 35-46 GB/s back-to-back and 24-33 GB/s between other kernels, the 1040 MiB one 24-25 GB/s.
    public static func streamBufferBytes(cache: UInt64, maxAllocation: UInt64, globalMemory: UInt64) -> Int {
        let mib: UInt64 = 1 << 20
        var bytes = max(64 * mib, min(cache, 1 << 40) * 4)
        bytes = min(bytes, maxAllocation, globalMemory / 4, 4096 * mib)
        return Int(max(mib, bytes / mib * mib))
    }

    public var streamBufferBytes: Int {
        Self.streamBufferBytes(cache: globalMemCacheSize, maxAllocation: maxAllocation, globalMemory: globalMemory)
    }
}

public enum Devices {
    /// PoCL's CPU driver pins its worker threads to cores when POCL_AFFINITY=1. Unpinned, on a
    /// 2-core VM the same kernel ran at two speeds a factor 2 apart within one process (0.37 vs
    /// 0.78 ms for SGE forward at 8x1024x14x14, switching after ~10 runs), which made every
    /// microbenchmark bimodal; pinned, the samples sit within ~10% and a training step is as fast
    /// (`sge bench` train_step 238 vs 235-241 images/s). Set before the ICD loader starts the
    /// driver; a value the user exported wins. Other drivers ignore the variable.
    static func pinCPUDriverThreads() {
        setenv("POCL_AFFINITY", "1", 0)
    }

    /// Every OpenCL device of every platform, in platform order. Returns an empty list (not an
    /// error) when no ICD or platform is installed, so callers can fall back to the reference backend.
    public static func all() throws -> [DeviceInfo] {
        pinCPUDriverThreads()
        var platformCount: cl_uint = 0
        let status = clGetPlatformIDs(0, nil, &platformCount)
        if status == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || platformCount == 0 { return [] }
        try check(status, "clGetPlatformIDs")
        var platforms = [cl_platform_id?](repeating: nil, count: Int(platformCount))
        try check(clGetPlatformIDs(platformCount, &platforms, nil), "clGetPlatformIDs")
        var result: [DeviceInfo] = []
        for (pi, platform) in platforms.enumerated() {
            guard let platform else { continue }
            var deviceCount: cl_uint = 0
            let s = clGetDeviceIDs(platform, cl_device_type(CL_DEVICE_TYPE_ALL), 0, nil, &deviceCount)
            if s == CL_DEVICE_NOT_FOUND || deviceCount == 0 { continue }
            try check(s, "clGetDeviceIDs")
            var ids = [cl_device_id?](repeating: nil, count: Int(deviceCount))
            try check(clGetDeviceIDs(platform, cl_device_type(CL_DEVICE_TYPE_ALL), deviceCount, &ids, nil), "clGetDeviceIDs")
            let platformName = try platformString(platform, cl_platform_info(CL_PLATFORM_NAME))
            for (di, id) in ids.enumerated() {
                guard let id else { continue }
                let type: cl_device_type = try deviceValue(id, CL_DEVICE_TYPE)
                let typeName = (type & cl_device_type(CL_DEVICE_TYPE_GPU)) != 0 ? "GPU"
                    : (type & cl_device_type(CL_DEVICE_TYPE_CPU)) != 0 ? "CPU"
                    : (type & cl_device_type(CL_DEVICE_TYPE_ACCELERATOR)) != 0 ? "accelerator" : "other"
                let cu: cl_uint = try deviceValue(id, CL_DEVICE_MAX_COMPUTE_UNITS)
                let clock: cl_uint = try deviceValue(id, CL_DEVICE_MAX_CLOCK_FREQUENCY)
                let gmem: cl_ulong = try deviceValue(id, CL_DEVICE_GLOBAL_MEM_SIZE)
                let lmem: cl_ulong = try deviceValue(id, CL_DEVICE_LOCAL_MEM_SIZE)
                let wg: Int = try deviceValue(id, CL_DEVICE_MAX_WORK_GROUP_SIZE)
                let alloc: cl_ulong = try deviceValue(id, CL_DEVICE_MAX_MEM_ALLOC_SIZE)
                let cache: cl_ulong = try deviceValue(id, CL_DEVICE_GLOBAL_MEM_CACHE_SIZE)
                let floatWidth: cl_uint = try deviceValue(id, CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT)
                result.append(DeviceInfo(
                    platformIndex: pi, deviceIndex: di, globalIndex: result.count,
                    platformName: platformName,
                    name: try deviceString(id, CL_DEVICE_NAME),
                    vendor: try deviceString(id, CL_DEVICE_VENDOR),
                    driverVersion: try deviceString(id, CL_DRIVER_VERSION),
                    deviceVersion: try deviceString(id, CL_DEVICE_VERSION),
                    openCLCVersion: try deviceString(id, CL_DEVICE_OPENCL_C_VERSION),
                    isGPU: typeName == "GPU", typeName: typeName,
                    computeUnits: Int(cu), clockMHz: Int(clock),
                    globalMemory: gmem, localMemory: lmem, maxWorkGroupSize: wg, maxAllocation: alloc,
                    globalMemCacheSize: cache, nativeFloatVectorWidth: Int(floatWidth),
                    extensions: try deviceString(id, CL_DEVICE_EXTENSIONS),
                    platformID: platform, deviceID: id))
            }
        }
        return result
    }

    static func platformString(_ p: cl_platform_id, _ param: cl_platform_info) throws -> String {
        var size = 0
        try check(clGetPlatformInfo(p, param, 0, nil, &size), "clGetPlatformInfo")
        var bytes = [CChar](repeating: 0, count: size + 1)
        try check(clGetPlatformInfo(p, param, size, &bytes, nil), "clGetPlatformInfo")
        return String(cString: bytes).trimmingSpaces()
    }

    static func deviceString(_ d: cl_device_id, _ param: Int32) throws -> String {
        var size = 0
        try check(clGetDeviceInfo(d, cl_device_info(param), 0, nil, &size), "clGetDeviceInfo")
        var bytes = [CChar](repeating: 0, count: size + 1)
        try check(clGetDeviceInfo(d, cl_device_info(param), size, &bytes, nil), "clGetDeviceInfo")
        return String(cString: bytes).trimmingSpaces()
    }

    static func deviceValue<T>(_ d: cl_device_id, _ param: Int32) throws -> T {
        let p = UnsafeMutablePointer<T>.allocate(capacity: 1)
        defer { p.deallocate() }
        try check(clGetDeviceInfo(d, cl_device_info(param), MemoryLayout<T>.size, p, nil), "clGetDeviceInfo")
        return p.pointee
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\n" || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\n" || l == "\t" { s.removeLast() }
        return String(s)
    }
}
