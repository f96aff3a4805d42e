import Foundation

/// Reading and writing the safetensors format: an 8-byte little-endian header length, a JSON header
/// mapping names to `{dtype, shape, data_offsets}` (plus an optional `__metadata__` object of strings),
/// then the raw little-endian tensor bytes. Only F32 is written; F32, F64, F16, BF16, I64 and I32 are
/// read and converted to Float (PyTorch `state_dict`s hold int64 `num_batches_tracked` counters and
/// may be saved in half precision). Every field is validated against the file size, so a truncated or corrupt
/// file is rejected with a message that names the file and the problem.
public struct SafeTensors: Sendable {
    public var tensors: [String: HostTensor]
    /// The file's metadata, without the `hash.<tensor>` integrity entries (those are checked by
    /// `decode` and written by `encode`).
    public var metadata: [String: String]
    /// Tensors whose stored hash was verified when the file was read (empty for files without
    /// hashes, such as plain PyTorch safetensors).
    public var verifiedTensors: Set<String> = []

    /// Metadata key prefix of a tensor's integrity hash: `hash.<name>` = `fnv1a64:<16 hex digits>`
    /// of the tensor's stored bytes.
    public static let hashPrefix = "hash."

    public init(tensors: [String: HostTensor] = [:], metadata: [String: String] = [:]) {
        self.tensors = tensors
        self.metadata = metadata
    }

    /// The tensor called `name`, or an error naming the file's tensors.
    public func tensor(_ name: String, path: String = "safetensors") throws -> HostTensor {
        guard let t = tensors[name] else {
            throw SGEError.corruptFile(
                path: path, reason: "no tensor named '\(name)' (has: \(tensors.keys.sorted().joined(separator: ", ")))")
        }
        return t
    }

    /// Largest header accepted (the reference implementation uses the same 100 MB cap).
    static let maxHeaderBytes = 100_000_000

    public static func read(path: String) throws -> SafeTensors {
        let bytes: Data
        do {
            bytes = try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe)
        } catch {
            throw SGEError.io(path: path, reason: "cannot read: \(error.localizedDescription)")
        }
        return try decode(bytes, path: path)
    }

    public static func decode(_ bytes: Data, path: String) throws -> SafeTensors {
        func corrupt(_ reason: String) -> SGEError { .corruptFile(path: path, reason: reason) }
        guard bytes.count >= 8 else { throw corrupt("file is \(bytes.count) bytes, shorter than the 8-byte header length") }
        let headerLength = bytes.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard headerLength <= UInt64(maxHeaderBytes) else { throw corrupt("header length \(headerLength) exceeds the 100 MB limit") }
        guard headerLength <= UInt64(bytes.count - 8) else {
            throw corrupt("header length \(headerLength) runs past the end of the file (\(bytes.count) bytes): truncated?")
        }
        let headerStart = bytes.startIndex + 8
        let dataStart = headerStart + Int(headerLength)
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: bytes[headerStart..<dataStart])
        } catch {
            throw corrupt("header is not valid JSON")
        }
        guard let header = json as? [String: Any] else { throw corrupt("header is not a JSON object") }
        let dataSize = bytes.count - 8 - Int(headerLength)
        var result = SafeTensors()
        var ranges: [(Int, Int, String)] = []
        for (name, value) in header {
            if name == "__metadata__" {
                guard let meta = value as? [String: Any] else { throw corrupt("__metadata__ is not an object") }
                for (k, v) in meta {
                    guard let s = v as? String else { throw corrupt("metadata '\(k)' is not a string") }
                    result.metadata[k] = s
                }
                continue
            }
            guard let entry = value as? [String: Any],
                  let dtype = entry["dtype"] as? String,
                  let shapeAny = entry["shape"] as? [Any],
                  let offsetsAny = entry["data_offsets"] as? [Any]
            else { throw corrupt("tensor '\(name)' lacks dtype, shape or data_offsets") }
            let shape = try shapeAny.map { d -> Int in
                guard let n = (d as? NSNumber)?.intValue, n >= 0 else { throw corrupt("tensor '\(name)' has a bad dimension \(d)") }
                return n
            }
            let offsets = try offsetsAny.map { d -> Int in
                guard let n = (d as? NSNumber)?.intValue, n >= 0 else { throw corrupt("tensor '\(name)' has a bad offset \(d)") }
                return n
            }
            guard offsets.count == 2, offsets[0] <= offsets[1] else { throw corrupt("tensor '\(name)' has bad data_offsets \(offsets)") }
            let elementSize: Int
            switch dtype {
            case "F32", "I32": elementSize = 4
            case "F64", "I64": elementSize = 8
            case "F16", "BF16": elementSize = 2
            default: throw corrupt("tensor '\(name)' has dtype \(dtype); sge reads F32, F64, F16, BF16, I64 and I32")
            }
            let count = shape.reduce(1, *)
            guard offsets[1] - offsets[0] == count * elementSize else {
                throw corrupt("tensor '\(name)' of shape \(shape) \(dtype) needs \(count * elementSize) bytes, offsets give \(offsets[1] - offsets[0])")
            }
            guard offsets[1] <= dataSize else {
                throw corrupt("tensor '\(name)' ends at byte \(offsets[1]) but the data section has \(dataSize) bytes: truncated?")
            }
            ranges.append((offsets[0], offsets[1], name))
            var values = [Float](repeating: 0, count: count)
            let start = dataStart + offsets[0]
            bytes[start..<(start + count * elementSize)].withUnsafeBytes { raw in
                switch dtype {
                case "F32":
                    for i in 0..<count { values[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
                case "I32":
                    for i in 0..<count { values[i] = Float(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))) }
                case "F64":
                    for i in 0..<count { values[i] = Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
                case "I64":
                    for i in 0..<count { values[i] = Float(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))) }
                case "BF16":
                    for i in 0..<count {
                        values[i] = Float(bitPattern: UInt32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16)
                    }
                default:  // F16
                    for i in 0..<count { values[i] = halfToFloat(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
                }
            }
            result.tensors[name] = HostTensor(shape: Shape(shape), data: values)
        }
        try verifyHashes(&result, bytes: bytes, dataStart: dataStart, ranges: ranges, path: path)
        ranges.sort { $0.0 < $1.0 }
        for (a, b) in zip(ranges, ranges.dropFirst()) where b.0 < a.1 {
            throw corrupt("tensors '\(a.2)' and '\(b.2)' overlap")
        }
        return result
    }

    /// Checks every `hash.<name>` entry against the tensor's bytes and removes it from the metadata.
    /// A file that has hashes must have one for every tensor and a tensor for every hash.
    static func verifyHashes(_ result: inout SafeTensors, bytes: Data, dataStart: Int, ranges: [(Int, Int, String)], path: String) throws {
        let hashKeys = result.metadata.keys.filter { $0.hasPrefix(hashPrefix) }
        guard !hashKeys.isEmpty else { return }
        var byName: [String: (Int, Int)] = [:]
        for (a, b, name) in ranges { byName[name] = (a, b) }
        for key in hashKeys.sorted() {
            let name = String(key.dropFirst(hashPrefix.count))
            let stored = result.metadata.removeValue(forKey: key)!
            guard let (a, b) = byName[name] else {
                throw SGEError.corruptFile(path: path, reason: "the metadata has a hash for tensor '\(name)' but the file has no such tensor (tensor removed or renamed?)")
            }
            let actual = Integrity.tag(bytes[(dataStart + a)..<(dataStart + b)])
            guard actual == stored else {
                throw SGEError.corruptFile(path: path, reason: "tensor '\(name)' does not match its stored hash (\(stored), its bytes give \(actual)): "
                    + "the file was damaged after it was written; use another checkpoint")
            }
            result.verifiedTensors.insert(name)
        }
        for (_, _, name) in ranges where !result.verifiedTensors.contains(name) {
            throw SGEError.corruptFile(path: path, reason: "tensor '\(name)' has no hash although the file's other tensors do (tensor added after writing?)")
        }
    }

    /// The file's bytes: tensors in name order, header padded with spaces to a multiple of 8; the
    /// metadata gets a `hash.<name>` integrity entry per tensor.
    public func encode() throws -> Data {
        var header: [String: Any] = [:]
        var offset = 0
        let names = tensors.keys.sorted()
        var meta = metadata.filter { !$0.key.hasPrefix(Self.hashPrefix) }
        for name in names { meta[Self.hashPrefix + name] = Integrity.tag(of: tensors[name]!.data) }
        if !meta.isEmpty { header["__metadata__"] = meta }
        for name in names {
            let t = tensors[name]!
            header[name] = ["dtype": "F32", "shape": t.shape.dims, "data_offsets": [offset, offset + 4 * t.data.count]] as [String: Any]
            offset += 4 * t.data.count
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        var out = Data(capacity: 8 + json.count + offset)
        var length = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &length) { out.append(contentsOf: $0) }
        out.append(json)
        for name in names {
            tensors[name]!.data.withUnsafeBufferPointer { buf in
                if Int(littleEndian: 1) == 1 {
                    out.append(UnsafeBufferPointer(start: UnsafeRawPointer(buf.baseAddress!).assumingMemoryBound(to: UInt8.self), count: 4 * buf.count))
                } else {
                    for v in buf { var le = v.bitPattern.littleEndian; withUnsafeBytes(of: &le) { out.append(contentsOf: $0) } }
                }
            }
        }
        return out
    }

    /// Writes the file atomically: to a temporary file beside it, then renamed over the target, so
    /// a crash never leaves a half-written file and an existing file is replaced only when complete.
    public func write(path: String) throws {
        let data = try encode()
        try AtomicFile.write(data, to: path)
    }
}

/// Atomic file replacement: write a temporary sibling, flush it, rename it over the target.
/// Temporaries are named `.<name>.tmp-<pid>-<random>`; one whose process is gone (a write killed
/// by kill -9 or a crash) is removed by the next write of the same file.
public enum AtomicFile {
    /// Removes `.<name>.tmp-<pid>-*` siblings of `url` whose process no longer exists.
    public static func removeStaleTemporaries(for url: URL) {
        let dir = url.deletingLastPathComponent()
        let prefix = ".\(url.lastPathComponent).tmp-"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir.path) else { return }
        for name in names where name.hasPrefix(prefix) {
            let rest = name.dropFirst(prefix.count)
            guard let pid = rest.split(separator: "-").first.flatMap({ Int32($0) }) else { continue }
            if pid == getpid() || (kill(pid, 0) == 0 || errno == EPERM) { continue }  // a live writer
            try? FileManager.default.removeItem(at: dir.appendingPathComponent(name))
        }
    }

    public static func write(_ data: Data, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent()
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        } catch {
            throw SGEError.io(path: dir.path, reason: "cannot create directory: \(error.localizedDescription)")
        }
        removeStaleTemporaries(for: url)
        let tmp = dir.appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        guard FileManager.default.createFile(atPath: tmp.path, contents: nil) else {
            throw SGEError.io(path: tmp.path, reason: "cannot create temporary file (directory not writable?)")
        }
        do {
            let handle = try FileHandle(forWritingTo: tmp)
            try handle.write(contentsOf: data)
            try handle.synchronize()
            try handle.close()
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw SGEError.io(path: path, reason: "write failed: \(error.localizedDescription)")
        }
        if rename(tmp.path, url.path) != 0 {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: tmp)
            throw SGEError.io(path: path, reason: "rename of temporary file failed: \(reason)")
        }
    }
}

/// Integrity hashes of stored bytes: 64-bit FNV-1a, written as `fnv1a64:<16 hex digits>`. Not a
/// defence against tampering, but any changed, truncated or shifted byte changes it.
public enum Integrity {
    public static func fnv1a64<C: Collection>(_ bytes: C) -> UInt64 where C.Element == UInt8 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }

    public static func fnv1a64(_ data: Data) -> UInt64 {
        data.withUnsafeBytes { raw in fnv1a64(raw.bindMemory(to: UInt8.self)) }
    }

    public static func hex(_ h: UInt64) -> String {
        let s = String(h, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }

    /// The tag stored for `bytes`.
    public static func tag(_ bytes: Data) -> String { "fnv1a64:" + hex(fnv1a64(bytes)) }

    /// The tag of `values` as stored (little-endian float32).
    public static func tag(of values: [Float]) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for v in values {
            var bits = v.bitPattern  // bytes taken low first: the little-endian order they are stored in
            for _ in 0..<4 {
                h = (h ^ UInt64(bits & 0xFF)) &* 0x100_0000_01b3
                bits >>= 8
            }
        }
        return "fnv1a64:" + hex(h)
    }
}

/// IEEE 754 binary16 bits to Float (exact: every half value is a float).
func halfToFloat(_ h: UInt16) -> Float {
    let sign: Float = h & 0x8000 != 0 ? -1 : 1
    let exponent = Int((h >> 10) & 0x1F)
    let mantissa = Float(h & 0x3FF)
    switch exponent {
    case 0: return sign * mantissa * 0x1p-24
    case 31: return mantissa == 0 ? sign * .infinity : .nan
    default: return sign * (1 + mantissa / 1024) * Float(sign: .plus, exponent: exponent - 15, significand: 1)
    }
}
