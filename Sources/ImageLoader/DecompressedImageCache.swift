// ImageLoader layer: a cache of decompressed kernels, so that booting the same bzImage
// again skips its decompression (XZ at ~100 MB/s is most of a domain build).

import Foundation

/// Decompressed kernels on disk, each named by the SHA-256 of the compressed bytes it
/// came from: `<directory>/<sha256>.elf`, a file of the magic "DOMUSKC1", the
/// little-endian length, then the bytes. Written to a temporary file and renamed, so a
/// reader sees a whole entry or none; read back only when the magic and length match
/// the file (a truncated or foreign file is ignored and replaced). What comes out is
/// the same untrusted ELF the decompressor would give: the loader checks it just as
/// thoroughly. The directory is created private to the user (0700); one that is
/// writable by others is not used. At most `capacity` entries are kept, the least
/// recently used go first. Every failure only means no cache: the kernel is
/// decompressed as without one.
public final class DecompressedImageCache: Sendable {
    public let directory: String
    public let capacity: Int
    static let magic = Array("DOMUSKC1".utf8)
    static let headerSize = 16

    /// Writes started by `storeInBackground` and not yet finished, in any cache of the
    /// process (a short-lived `domus run` waits for them before it exits).
    private static let pendingWrites = DispatchGroup()

    public init(directory: String, capacity: Int = 8) {
        self.directory = directory
        self.capacity = max(1, capacity)
    }

    /// Stores `bytes` for `key` on another thread (tens of MiB: not in the way of a
    /// domain build). An entry appears whole or not at all, so a process that ends
    /// first leaves at most a temporary file behind.
    func storeInBackground(_ key: String, _ bytes: [UInt8]) {
        Self.pendingWrites.enter()
        let group = Self.pendingWrites
        Thread.detachNewThread { [self] in
            store(key, bytes)
            group.leave()
        }
    }

    /// Waits until the process's background writes have finished; false if `seconds`
    /// passed first.
    public static func waitForPendingWrites(seconds: Double) -> Bool {
        pendingWrites.wait(timeout: .now() + seconds) == .success
    }

    /// The cache the environment asks for: `$DOMUS_KERNEL_CACHE` (a directory, "off",
    /// or "on" for the default place), else `$XDG_CACHE_HOME/domus/kernels`, else
    /// `$HOME/.cache/domus/kernels`; nil when it is off or there is no such place.
    /// ("on" once made a cache directory named `on` wherever domus ran.)
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> DecompressedImageCache? {
        if let setting = environment["DOMUS_KERNEL_CACHE"], setting != "on" {
            return setting.isEmpty || setting == "off" ? nil : DecompressedImageCache(directory: setting)
        }
        if let base = environment["XDG_CACHE_HOME"], base.hasPrefix("/") {
            return DecompressedImageCache(directory: base + "/domus/kernels")
        }
        if let home = environment["HOME"], home.hasPrefix("/") {
            return DecompressedImageCache(directory: home + "/.cache/domus/kernels")
        }
        return nil
    }

    /// The key for compressed `bytes`.
    static func key(_ bytes: ArraySlice<UInt8>) -> String { SHA256.hexDigest(bytes) }

    func path(_ key: String) -> String { directory + "/" + key + ".elf" }

    /// The decompressed bytes stored for `key`, if a whole entry of at most `limit`
    /// bytes is there (a larger one is not read).
    func lookup(_ key: String, limit: Int = Int.max) -> [UInt8]? {
        guard usableDirectory(create: false) else { return nil }
        let descriptor = open(path(key), O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0, status.st_mode & S_IFMT == S_IFREG, status.st_size >= Self.headerSize else { return nil }
        var header = [UInt8](repeating: 0, count: Self.headerSize)
        guard Self.readFully(descriptor, into: &header), Array(header[0..<8]) == Self.magic else { return nil }
        var length: UInt64 = 0
        for index in 0..<8 { length |= UInt64(header[8 + index]) << (8 * UInt64(index)) }
        guard length == UInt64(status.st_size) - UInt64(Self.headerSize), length <= UInt64(max(0, limit)) else { return nil }
        // Read straight into uninitialised storage: zeroing ~66 MiB first would be a
        // second pass over memory the read fills anyway.
        var complete = false
        let bytes = [UInt8](unsafeUninitializedCapacity: Int(length)) { buffer, initialized in
            complete = Self.readFully(descriptor, into: UnsafeMutableRawBufferPointer(buffer))
            initialized = complete ? buffer.count : 0
        }
        guard complete else { return nil }
        // Most recently used: keeps it through eviction.
        try? FileManager.default.setAttributes([.modificationDate: Date()], ofItemAtPath: path(key))
        return bytes
    }

    /// Fills `buffer` from the descriptor's current position; false on a short read.
    private static func readFully(_ descriptor: Int32, into buffer: inout [UInt8]) -> Bool {
        buffer.withUnsafeMutableBytes { readFully(descriptor, into: $0) }
    }

    private static func readFully(_ descriptor: Int32, into raw: UnsafeMutableRawBufferPointer) -> Bool {
        guard let base = raw.baseAddress else { return true }
        var done = 0
        while done < raw.count {
            let count = read(descriptor, base + done, raw.count - done)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return false }
            done += count
        }
        return true
    }

    /// Stores `bytes` for `key`; returns whether it did.
    @discardableResult
    func store(_ key: String, _ bytes: [UInt8]) -> Bool {
        guard usableDirectory(create: true) else { return false }
        var contents = Self.magic
        contents.reserveCapacity(Self.headerSize + bytes.count)
        let length = UInt64(bytes.count)
        for index in 0..<8 { contents.append(UInt8(truncatingIfNeeded: length >> (8 * UInt64(index)))) }
        contents += bytes
        let temporary = directory + "/." + key + "." + UUID().uuidString + ".tmp"   // unique per writer
        guard FileManager.default.createFile(atPath: temporary, contents: Data(contents), attributes: [.posixPermissions: 0o600]) else {
            return false
        }
        guard rename(temporary, path(key)) == 0 else {
            unlink(temporary)
            return false
        }
        evict()
        return true
    }

    /// Whether the directory exists (created if asked), is a directory, belongs to this
    /// user and is not writable by others.
    private func usableDirectory(create: Bool) -> Bool {
        var status = stat()
        if stat(directory, &status) != 0 {
            guard create, (try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                                    attributes: [.posixPermissions: 0o700])) != nil,
                  stat(directory, &status) == 0 else { return false }
        }
        return status.st_mode & S_IFMT == S_IFDIR && status.st_uid == geteuid() && status.st_mode & 0o022 == 0
    }

    /// Removes the least recently used entries beyond `capacity`, and temporary files a
    /// writer left more than an hour ago (its process ended before the rename).
    private func evict() {
        let manager = FileManager.default
        guard let names = try? manager.contentsOfDirectory(atPath: directory) else { return }
        for name in names where name.hasPrefix(".") && name.hasSuffix(".tmp") {
            let full = directory + "/" + name
            if let date = (try? manager.attributesOfItem(atPath: full))?[.modificationDate] as? Date, date.timeIntervalSinceNow < -3600 {
                try? manager.removeItem(atPath: full)
            }
        }
        let entries = names.filter { $0.hasSuffix(".elf") }.compactMap { name -> (String, Date)? in
            let full = directory + "/" + name
            guard let date = (try? manager.attributesOfItem(atPath: full))?[.modificationDate] as? Date else { return nil }
            return (full, date)
        }.sorted { $0.1 > $1.1 }
        for (full, _) in entries.dropFirst(capacity) { try? manager.removeItem(atPath: full) }
    }
}
