// The decompressed-kernel cache (DecompressedImageCache.swift) and SHA-256, which names
// its entries.

import Foundation
import Testing

@testable import ImageLoader

private func temporaryDirectory() throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("domus-kernel-cache-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

@Suite("SHA-256")
struct SHA256Tests {
    @Test("FIPS 180-4 test vectors, and lengths around the block boundary")
    func vectors() {
        #expect(SHA256.hexDigest([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hexDigest(Array("abc".utf8)[...]) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hexDigest(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)[...])
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        let million = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        #expect(SHA256.hexDigest(million[...]) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        // 55, 56 and 64 bytes: the padding spills into a second block or not.
        #expect(SHA256.hexDigest([UInt8](repeating: 0x61, count: 55)[...]) == "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318")
        #expect(SHA256.hexDigest([UInt8](repeating: 0x61, count: 56)[...]) == "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a")
        #expect(SHA256.hexDigest([UInt8](repeating: 0x61, count: 64)[...]) == "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb")
        // A slice hashes its own bytes, not the array's.
        let bytes = Array("xxabcxx".utf8)
        #expect(SHA256.hexDigest(bytes[2..<5]) == SHA256.hexDigest(Array("abc".utf8)[...]))
    }
}

@Suite("Decompressed kernel cache")
struct DecompressedImageCacheTests {
    @Test("A second load of the same bzImage takes the decompressed kernel from the cache, and gets the same kernel")
    func roundTrip() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cache = DecompressedImageCache(directory: directory + "/kernels")
        let image = makeBzImage(payload: try gzip(ELFBuilder.linuxLike().build()), uncompressedSize: 0)
        let options = ImageLoadOptions(cache: cache)
        let first = try KernelImage.load(bytes: image, options: options)
        #expect(!first.fromCache)
        #expect(DecompressedImageCache.waitForPendingWrites(seconds: 30), "the copy is written beside the build")
        let second = try KernelImage.load(bytes: image, options: options)
        #expect(second.fromCache)
        #expect(second.elf.bytes == first.elf.bytes && second.layout.entry == first.layout.entry)
        // The directory is private to the user.
        var status = stat()
        #expect(stat(directory + "/kernels", &status) == 0 && status.st_mode & 0o777 == 0o700)
        // Without a cache, nothing is kept.
        #expect(!(try KernelImage.load(bytes: image)).fromCache)
    }

    @Test("A truncated or foreign entry is not used, and is replaced")
    func damagedEntries() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cache = DecompressedImageCache(directory: directory)
        let key = DecompressedImageCache.key(Array("image".utf8)[...])
        #expect(cache.store(key, [1, 2, 3, 4]))
        #expect(cache.lookup(key) == [1, 2, 3, 4])
        #expect(cache.lookup(key, limit: 3) == nil, "larger than the loader's limit: not read")
        let path = cache.path(key)
        let whole = try #require(FileManager.default.contents(atPath: path))
        try whole.dropLast().write(to: URL(fileURLWithPath: path))
        #expect(cache.lookup(key) == nil, "truncated")
        try Data("not a cache entry at all".utf8).write(to: URL(fileURLWithPath: path))
        #expect(cache.lookup(key) == nil, "foreign")
        #expect(cache.store(key, [5]))
        #expect(cache.lookup(key) == [5])
        #expect(cache.lookup(DecompressedImageCache.key(Array("other".utf8)[...])) == nil)
    }

    @Test("A directory others may write to is not used")
    func unsafeDirectory() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(chmod(directory, 0o777) == 0)
        let cache = DecompressedImageCache(directory: directory)
        #expect(!cache.store("k", [1]))
        #expect(cache.lookup("k") == nil)
    }

    @Test("The least recently used entries beyond the capacity are removed")
    func eviction() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cache = DecompressedImageCache(directory: directory, capacity: 2)
        for (index, key) in ["a", "b", "c"].enumerated() {
            #expect(cache.store(key, [UInt8(index)]))
            // Distinct modification times, oldest first.
            try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: Double(index) - 10)],
                                                  ofItemAtPath: cache.path(key))
        }
        #expect(cache.store("d", [3]))
        let left = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        #expect(left == ["c.elf", "d.elf"])
    }

    @Test("Where the environment puts it, and how to turn it off")
    func environment() {
        #expect(DecompressedImageCache.fromEnvironment(["DOMUS_KERNEL_CACHE": "off", "HOME": "/root"]) == nil)
        #expect(DecompressedImageCache.fromEnvironment(["DOMUS_KERNEL_CACHE": "/var/cache/k"])?.directory == "/var/cache/k")
        #expect(DecompressedImageCache.fromEnvironment(["XDG_CACHE_HOME": "/x", "HOME": "/root"])?.directory == "/x/domus/kernels")
        #expect(DecompressedImageCache.fromEnvironment(["HOME": "/root"])?.directory == "/root/.cache/domus/kernels")
        #expect(DecompressedImageCache.fromEnvironment(["DOMUS_KERNEL_CACHE": "on", "HOME": "/root"])?.directory == "/root/.cache/domus/kernels")
        #expect(DecompressedImageCache.fromEnvironment(["DOMUS_KERNEL_CACHE": "on"]) == nil)
        #expect(DecompressedImageCache.fromEnvironment([:]) == nil)
    }
}
