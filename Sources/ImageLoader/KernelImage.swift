// ImageLoader layer: the entry points — bytes or a path in, a checked kernel out.

import Foundation

/// How the kernel file was packaged.
public enum KernelFormat: Equatable, Sendable {
    /// A plain ELF64 file (vmlinux).
    case elf
    /// An ELF file compressed as a whole (e.g. vmlinux.gz), as xl accepts for `kernel=`.
    case compressedELF(Compression)
    /// A Linux bzImage; `payload` is the payload's compression, `nil` for a raw ELF.
    case bzImage(payload: Compression?)
}

/// Limits that bound the memory a hostile image can make the loader use.
public struct ImageLoadOptions: Equatable, Sendable {
    /// Largest decompressed kernel accepted (default 512 MiB; Debian's is 63 MiB).
    public var maxDecompressedSize: Int
    /// Largest kernel file `load(path:)` reads (default 512 MiB).
    public var maxFileSize: Int
    /// Where decompressed kernels are kept for the next boot of the same image (nil: none).
    public var cache: DecompressedImageCache?

    public init(maxDecompressedSize: Int = 512 << 20, maxFileSize: Int = 512 << 20, cache: DecompressedImageCache? = nil) {
        self.maxDecompressedSize = maxDecompressedSize
        self.maxFileSize = maxFileSize
        self.cache = cache
    }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.maxDecompressedSize == rhs.maxDecompressedSize && lhs.maxFileSize == rhs.maxFileSize
            && lhs.cache?.directory == rhs.cache?.directory
    }
}

/// A kernel ready for the domain builder: the ELF, its Xen notes, and where each
/// segment goes.
public struct LoadedKernel: Sendable {
    public let format: KernelFormat
    /// The (decompressed) ELF file.
    public let elf: ELFFile
    public let notes: XenNotes
    public let layout: KernelLayout
    /// Whether the decompressed ELF came from a `DecompressedImageCache`.
    public var fromCache = false
    /// How long each step of the load took (read, unpack, check), for the debug log.
    public var steps: [(name: String, duration: Duration)] = []

    /// The bytes to copy to `segment.virtualAddress`; the domain builder zeroes the
    /// remaining `memorySize - fileSize` bytes (libelf-loader.c `elf_load_image`).
    public func contents(of segment: KernelLayout.Segment) -> ArraySlice<UInt8> {
        ByteReader(elf.bytes).slice(offset: segment.fileOffset, length: segment.fileSize) ?? []
    }
}

/// Loads Xen PV kernel images: ELF64, bzImage (gzip or XZ payload, or a raw ELF one),
/// or a gzip/XZ-compressed ELF. Follows the probe order of Xen's domain builder
/// (tools/libs/guest/xg_dom_bzimageloader.c, then xg_dom_elfloader.c).
public enum KernelImage {
    /// Detects the format of `bytes`, unpacks it, and returns the checked kernel.
    public static func load(
        bytes: [UInt8], options: ImageLoadOptions = ImageLoadOptions()
    ) throws(ImageError) -> LoadedKernel {
        let clock = ContinuousClock()
        let start = clock.now
        var cached = false
        let (format, elfBytes) = try unpack(bytes, options: options, fromCache: &cached)
        let unpacked = clock.now
        let elf = try ELFFile(bytes: elfBytes)
        let notes = try XenNotes(elf: elf)
        let layout = try KernelLayout(elf: elf, notes: notes)
        var kernel = LoadedKernel(format: format, elf: elf, notes: notes, layout: layout)
        kernel.fromCache = cached
        kernel.steps = [(cached ? "cache lookup" : "unpack", unpacked - start), ("check", clock.now - unpacked)]
        return kernel
    }

    /// Reads the kernel file at `path` and loads it; a missing, unreadable or
    /// oversized file is an `ImageError` naming the path.
    public static func load(
        path: String, options: ImageLoadOptions = ImageLoadOptions()
    ) throws(ImageError) -> LoadedKernel {
        let clock = ContinuousClock()
        let start = clock.now
        let bytes = try readFile(path, limit: options.maxFileSize)
        let read = clock.now - start
        var kernel = try load(bytes: bytes, options: options)
        kernel.steps.insert(("read", read), at: 0)
        return kernel
    }

    /// The ELF bytes inside `bytes`, and how they were packaged.
    static func unpack(
        _ bytes: [UInt8], options: ImageLoadOptions, fromCache: inout Bool
    ) throws(ImageError) -> (KernelFormat, [UInt8]) {
        if ELFFile.hasMagic(bytes[...]) {
            return (.elf, bytes)
        }
        if BzImageHeader.hasMagic(bytes) {
            let header = try BzImageHeader(bytes: bytes)
            let payload = try header.payload(in: bytes)
            guard let compression = Compression.detect(payload) else {
                // Not in Xen: an uncompressed ELF payload is accepted as is.
                guard ELFFile.hasMagic(payload) else { throw .bzImageUnknownPayload }
                return (.bzImage(payload: nil), Array(payload))
            }
            let elf = try decompress(payload, as: compression, options: options, context: "bzImage payload", fromCache: &fromCache)
            guard ELFFile.hasMagic(elf[...]) else { throw .payloadNotELF("bzImage \(compression.name) payload") }
            return (.bzImage(payload: compression), elf)
        }
        if let compression = Compression.detect(bytes[...]) {
            let elf = try decompress(bytes[...], as: compression, options: options, context: "kernel file", fromCache: &fromCache)
            guard ELFFile.hasMagic(elf[...]) else { throw .payloadNotELF("\(compression.name)-compressed kernel file") }
            return (.compressedELF(compression), elf)
        }
        throw .unrecognizedFormat
    }

    /// Decompresses `input`, or takes what the cache kept for the same bytes (within the
    /// size limit; the caller checks it as it would fresh output).
    static func decompress(_ input: ArraySlice<UInt8>, as compression: Compression, options: ImageLoadOptions,
                           context: String, fromCache: inout Bool) throws(ImageError) -> [UInt8] {
        guard let cache = options.cache, compression.isSupported else {
            return try Decompressor.decompress(input, as: compression, limit: options.maxDecompressedSize, context: context)
        }
        let key = DecompressedImageCache.key(input)
        if let cached = cache.lookup(key, limit: options.maxDecompressedSize) {
            fromCache = true
            return cached
        }
        let output = try Decompressor.decompress(input, as: compression, limit: options.maxDecompressedSize, context: context)
        // Written beside the build, not in its way (tens of MiB); an entry appears whole
        // or not at all, so a process that ends first leaves at most a temporary file.
        cache.storeInBackground(key, output)
        return output
    }

    /// Reads at most `limit` bytes of `path`, failing if the file is longer.
    static func readFile(_ path: String, limit: Int) throws(ImageError) -> [UInt8] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw .fileNotFound(path: path)
        }
        guard !isDirectory.boolValue else { throw .isDirectory(path: path) }
        do {
            let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
            defer { try? handle.close() }
            // One byte past the limit tells "exactly at the limit" from "too large",
            // without trusting the size the file system reports (think /dev/zero).
            let (wanted, overflow) = limit.addingReportingOverflow(1)
            let data = try handle.read(upToCount: overflow ? limit : wanted) ?? Data()
            guard data.count <= limit else { throw ImageError.fileTooLarge(path: path, limit: limit) }
            return [UInt8](data)
        } catch let error as ImageError {
            throw error
        } catch {
            throw .unreadable(path: path, reason: readableReason(error))
        }
    }

    /// A short reason for a Foundation file error: the POSIX message when there is one.
    private static func readableReason(_ error: any Error) -> String {
        let nsError = error as NSError
        let posix = (nsError.userInfo[NSUnderlyingErrorKey] as? NSError) ?? nsError
        if posix.domain == NSPOSIXErrorDomain, let code = Int32(exactly: posix.code),
            let posixCode = POSIXErrorCode(rawValue: code)
        {
            return POSIXError(posixCode).localizedDescription
        }
        return nsError.localizedDescription
    }
}
