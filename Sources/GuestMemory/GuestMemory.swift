import CGuestAtomics
#if canImport(Glibc)
import Glibc
#endif

/// A guest-physical access outside every mapped region. Hypercall handlers turn
/// this into -EFAULT for the guest; it never crashes the host.
public enum GuestMemoryError: Error, Equatable, Sendable, CustomStringConvertible {
    case outOfRange(address: UInt64, length: UInt64)
    case misaligned(address: UInt64, alignment: UInt64)
    case allocationFailed(bytes: UInt64, errno: Int32)

    public var description: String {
        switch self {
        case let .outOfRange(address, length):
            return "guest-physical access 0x\(String(address, radix: 16))+\(length) is outside guest memory"
        case let .misaligned(address, alignment):
            return "guest-physical access 0x\(String(address, radix: 16)) is not \(alignment)-byte aligned"
        case let .allocationFailed(bytes, errno):
            return "cannot allocate \(bytes) bytes of guest memory (errno \(errno))"
        }
    }
}

/// One contiguous block of host memory backing guest-physical [base, base + size).
///
/// The memory is a private anonymous mapping handed to KVM as a memory slot. A region
/// of 2 MiB or more is aligned to 2 MiB and advised as huge-page memory
/// (`MADV_HUGEPAGE`): the host then backs it with transparent huge pages and KVM maps
/// it into the guest 2 MiB at a time. With 4 KiB pages a Linux boot took ~23 000
/// nested-paging faults (one per page the guest first touches, each a trip through
/// KVM); QEMU advises its guest RAM the same way. Reads and writes race with the
/// guest by nature (the guest owns its memory); shared structures that need atomicity
/// use the atomic operations of `GuestMemory`.
public final class GuestMemoryRegion: @unchecked Sendable {
    /// First guest-physical address of the region.
    public let base: GuestPhysicalAddress
    /// Size in bytes; a multiple of the page size.
    public let size: UInt64
    /// What the region is for, for diagnostics ("ram", "hypervisor").
    public let name: String
    /// Whether the guest may see this region as its own RAM (false for the
    /// hypervisor's private area).
    public let isGuestRAM: Bool
    @usableFromInline let pointer: UnsafeMutableRawPointer

    /// Maps `size` bytes of zeroed memory for guest-physical `base`.
    public init(base: GuestPhysicalAddress, size: UInt64, name: String, isGuestRAM: Bool) throws(GuestMemoryError) {
        guard size > 0, size % pageSize == 0, base.rawValue % pageSize == 0,
              base.rawValue.addingReportingOverflow(size).overflow == false,
              size <= UInt64(Int.max) else {
            throw .outOfRange(address: base.rawValue, length: size)
        }
        guard let mapped = Self.mapAnonymous(size: Int(size)) else {
            throw .allocationFailed(bytes: size, errno: errno)
        }
        self.pointer = mapped
        self.base = base
        self.size = size
        self.name = name
        self.isGuestRAM = isGuestRAM
    }

    /// Huge-page size on x86-64: the alignment that lets KVM map 2 MiB at a time.
    static let hugePageSize = 2 << 20

    /// Maps `size` bytes of zeroed private memory, 2 MiB-aligned and advised for huge
    /// pages when `size` is at least 2 MiB. Nil (with `errno` set) when mmap fails.
    private static func mapAnonymous(size: Int) -> UnsafeMutableRawPointer? {
        let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE
        guard size >= hugePageSize else {
            // SAFETY: a fresh anonymous mapping that no one else references; checked for MAP_FAILED.
            let mapped = mmap(nil, size, PROT_READ | PROT_WRITE, flags, -1, 0)
            return mapped == MAP_FAILED ? nil : mapped
        }
        // Over-allocate by one huge page, then trim the unaligned head and the tail.
        let (span, overflow) = size.addingReportingOverflow(hugePageSize)
        guard !overflow else {
            errno = ENOMEM
            return nil
        }
        // SAFETY: a fresh anonymous mapping that no one else references; checked for MAP_FAILED.
        guard let raw = mmap(nil, span, PROT_READ | PROT_WRITE, flags, -1, 0), raw != MAP_FAILED else { return nil }
        let start = UInt(bitPattern: raw)
        let aligned = (start + UInt(hugePageSize - 1)) & ~UInt(hugePageSize - 1)
        let head = Int(aligned - start)
        let tail = span - head - size
        // SAFETY: the head and tail lie inside the mapping just made, outside [aligned, aligned + size).
        if head > 0 { munmap(raw, head) }
        if tail > 0 { munmap(raw + head + size, tail) }
        let pointer = raw + head
        // Advice only: a host without transparent huge pages keeps 4 KiB pages.
        // SAFETY: [pointer, pointer + size) is the mapping kept above.
        _ = madvise(pointer, size, MADV_HUGEPAGE)
        return pointer
    }

    deinit {
        // SAFETY: `pointer` was returned by mmap for exactly `size` bytes and is unmapped once.
        munmap(pointer, Int(size))
    }

    /// Host virtual address of the region's first byte, for KVM memory slots.
    public var hostAddress: UInt64 { UInt64(UInt(bitPattern: pointer)) }

    /// Whether [address, address + length) lies inside this region.
    @inlinable @inline(__always)
    func offset(of address: UInt64, length: UInt64) -> Int? {
        let start = base.rawValue
        guard address >= start else { return nil }
        let offset = address - start
        guard offset <= size, length <= size - offset else { return nil }
        return Int(offset)
    }
}

/// A domain's guest-physical memory: a few regions, with bounds-checked,
/// little-endian access by guest-physical address.
///
/// Every access is checked against the regions; an address outside them is a
/// `GuestMemoryError`, never a host fault.
public final class GuestMemory: @unchecked Sendable {
    /// The regions, sorted by base address, not overlapping.
    public let regions: [GuestMemoryRegion]

    public init(regions: [GuestMemoryRegion]) {
        self.regions = regions.sorted { $0.base < $1.base }
    }

    /// Convenience: one region of guest RAM from guest-physical 0 (tests, fake memory).
    public convenience init(ramBytes: UInt64) throws(GuestMemoryError) {
        self.init(regions: [try GuestMemoryRegion(base: GuestPhysicalAddress(0), size: ramBytes, name: "ram", isGuestRAM: true)])
    }

    /// The guest RAM region starting at guest-physical 0, if any.
    public var ram: GuestMemoryRegion? { regions.first { $0.isGuestRAM } }

    @inlinable @inline(__always)
    func locate(_ address: GuestPhysicalAddress, _ length: UInt64) throws(GuestMemoryError) -> UnsafeMutableRawPointer {
        for region in regions {
            if let offset = region.offset(of: address.rawValue, length: length) {
                return region.pointer + offset
            }
        }
        throw .outOfRange(address: address.rawValue, length: length)
    }

    /// Whether [address, address + length) is backed by one region.
    public func contains(_ address: GuestPhysicalAddress, length: UInt64) -> Bool {
        regions.contains { $0.offset(of: address.rawValue, length: length) != nil }
    }

    // MARK: Plain access

    /// Reads a little-endian integer. (Inlinable, so that callers in other modules get a
    /// specialised load instead of a generic call: the exit path reads many words.)
    @inlinable @inline(__always)
    public func read<T: FixedWidthInteger>(_ type: T.Type = T.self, at address: GuestPhysicalAddress) throws(GuestMemoryError) -> T {
        let pointer = try locate(address, UInt64(MemoryLayout<T>.size))
        // SAFETY: `locate` checked that the whole value lies inside a live mapping.
        return T(littleEndian: pointer.loadUnaligned(as: T.self))
    }

    /// Writes a little-endian integer.
    @inlinable @inline(__always)
    public func write<T: FixedWidthInteger>(_ value: T, at address: GuestPhysicalAddress) throws(GuestMemoryError) {
        let pointer = try locate(address, UInt64(MemoryLayout<T>.size))
        // SAFETY: `locate` checked that the whole value lies inside a live mapping.
        pointer.storeBytes(of: value.littleEndian, as: T.self)
    }

    /// Reads `count` bytes.
    public func readBytes(at address: GuestPhysicalAddress, count: Int) throws(GuestMemoryError) -> [UInt8] {
        guard count > 0 else { return [] }
        let pointer = try locate(address, UInt64(count))
        // SAFETY: `locate` checked [address, address + count) lies inside a live mapping.
        return Array(UnsafeRawBufferPointer(start: pointer, count: count))
    }

    /// Writes bytes.
    public func writeBytes<C: Collection>(_ bytes: C, at address: GuestPhysicalAddress) throws(GuestMemoryError) where C.Element == UInt8 {
        let count = bytes.count
        guard count > 0 else { return }
        let pointer = try locate(address, UInt64(count))
        // SAFETY: `locate` checked [address, address + count) lies inside a live mapping.
        let destination = UnsafeMutableRawBufferPointer(start: pointer, count: count)
        if let done = bytes.withContiguousStorageIfAvailable({ destination.copyMemory(from: UnsafeRawBufferPointer($0)) }) {
            _ = done
        } else {
            var index = 0
            for byte in bytes { destination[index] = byte; index += 1 }
        }
    }

    /// Fills `count` bytes with zero.
    public func zero(at address: GuestPhysicalAddress, count: UInt64) throws(GuestMemoryError) {
        guard count > 0 else { return }
        let pointer = try locate(address, count)
        // SAFETY: `locate` checked the range lies inside a live mapping.
        memset(pointer, 0, Int(count))
    }

    /// Copies `count` bytes between two guest-physical ranges (which may overlap).
    public func copy(from source: GuestPhysicalAddress, to destination: GuestPhysicalAddress, count: UInt64) throws(GuestMemoryError) {
        guard count > 0 else { return }
        let from = try locate(source, count)
        let to = try locate(destination, count)
        // SAFETY: both ranges were checked to lie inside live mappings; memmove allows overlap.
        memmove(to, from, Int(count))
    }

    /// Copies bytes out of guest memory into a host buffer.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at address: GuestPhysicalAddress) throws(GuestMemoryError) {
        guard buffer.count > 0, let base = buffer.baseAddress else { return }
        let pointer = try locate(address, UInt64(buffer.count))
        // SAFETY: the guest range was checked; the host buffer is the caller's, of buffer.count bytes.
        memcpy(base, pointer, buffer.count)
    }

    /// Copies bytes from a host buffer into guest memory.
    public func write(from buffer: UnsafeRawBufferPointer, at address: GuestPhysicalAddress) throws(GuestMemoryError) {
        guard buffer.count > 0, let base = buffer.baseAddress else { return }
        let pointer = try locate(address, UInt64(buffer.count))
        // SAFETY: the guest range was checked; the host buffer is the caller's, of buffer.count bytes.
        memcpy(pointer, base, buffer.count)
    }

    // MARK: Atomic access (for words the guest updates concurrently with locked instructions)

    @inline(__always)
    func locateAligned(_ address: GuestPhysicalAddress, _ size: UInt64) throws(GuestMemoryError) -> UnsafeMutableRawPointer {
        guard address.rawValue % size == 0 else { throw .misaligned(address: address.rawValue, alignment: size) }
        return try locate(address, size)
    }

    /// Atomically ORs `bits` into the 64-bit word at `address`; returns the old value.
    public func atomicFetchOr(_ bits: UInt64, at address: GuestPhysicalAddress) throws(GuestMemoryError) -> UInt64 {
        let pointer = try locateAligned(address, 8)
        // SAFETY: aligned, in range, and the mapping outlives the call.
        return cga_fetch_or64(pointer.assumingMemoryBound(to: UInt64.self), bits)
    }

    /// Atomically ANDs `bits` into the 64-bit word at `address`; returns the old value.
    public func atomicFetchAnd(_ bits: UInt64, at address: GuestPhysicalAddress) throws(GuestMemoryError) -> UInt64 {
        let pointer = try locateAligned(address, 8)
        // SAFETY: aligned, in range, and the mapping outlives the call.
        return cga_fetch_and64(pointer.assumingMemoryBound(to: UInt64.self), bits)
    }

    /// Atomically loads the 64-bit word at `address`.
    public func atomicLoad64(at address: GuestPhysicalAddress) throws(GuestMemoryError) -> UInt64 {
        let pointer = try locateAligned(address, 8)
        // SAFETY: aligned, in range, and the mapping outlives the call.
        return cga_load64(pointer.assumingMemoryBound(to: UInt64.self))
    }

    /// Atomically compares and exchanges the 64-bit word at `address`; returns the value found.
    public func atomicCompareExchange(at address: GuestPhysicalAddress, expected: UInt64, desired: UInt64) throws(GuestMemoryError) -> UInt64 {
        let pointer = try locateAligned(address, 8)
        // SAFETY: aligned, in range, and the mapping outlives the call.
        return cga_compare_exchange64(pointer.assumingMemoryBound(to: UInt64.self), expected, desired)
    }

    /// Atomically exchanges the byte at `address`; returns the old value.
    public func atomicExchange(_ value: UInt8, at address: GuestPhysicalAddress) throws(GuestMemoryError) -> UInt8 {
        let pointer = try locate(address, 1)
        // SAFETY: in range, and the mapping outlives the call.
        return cga_exchange8(pointer.assumingMemoryBound(to: UInt8.self), value)
    }

    /// Atomically loads the 32-bit word at `address` (ring indices).
    public func atomicLoad32(at address: GuestPhysicalAddress) throws(GuestMemoryError) -> UInt32 {
        let pointer = try locateAligned(address, 4)
        // SAFETY: aligned, in range, and the mapping outlives the call.
        return cga_load32(pointer.assumingMemoryBound(to: UInt32.self))
    }

    /// Atomically stores the 32-bit word at `address` (ring indices).
    public func atomicStore32(_ value: UInt32, at address: GuestPhysicalAddress) throws(GuestMemoryError) {
        let pointer = try locateAligned(address, 4)
        // SAFETY: aligned, in range, and the mapping outlives the call.
        cga_store32(pointer.assumingMemoryBound(to: UInt32.self), value)
    }

    /// A full memory barrier between hypervisor accesses to shared guest structures.
    public func fence() { cga_fence() }

    // MARK: The spin lock shared with code running inside the VM

    /// Takes the spin lock word at `address` (0 when free) for `tag`: spins briefly,
    /// then yields the CPU between attempts. Returns false if it is still taken after
    /// `limitNanoseconds` (or the word is not in guest memory); the caller decides.
    public func acquireSpinLock(at address: GuestPhysicalAddress, tag: UInt64, limitNanoseconds: UInt64) -> Bool {
        guard let pointer = try? locateAligned(address, 8) else { return false }
        // SAFETY: aligned, in range, and the mapping outlives the call.
        let word = pointer.assumingMemoryBound(to: UInt64.self)
        for _ in 0..<1000 {
            if cga_compare_exchange64(word, 0, tag) == 0 { return true }
            cga_pause()
        }
        var start = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        while true {
            if cga_compare_exchange64(word, 0, tag) == 0 { return true }
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            let elapsed = (now.tv_sec - start.tv_sec) * 1_000_000_000 + (now.tv_nsec - start.tv_nsec)
            if elapsed >= 0 && UInt64(elapsed) >= limitNanoseconds { return false }
            sched_yield()
        }
    }

    /// Sets the spin lock word to `tag` whoever holds it (after `acquireSpinLock`
    /// failed because its holder can no longer run); returns the previous holder.
    public func stealSpinLock(at address: GuestPhysicalAddress, tag: UInt64) -> UInt64 {
        guard let pointer = try? locateAligned(address, 8) else { return 0 }
        // SAFETY: aligned, in range, and the mapping outlives the call.
        let word = pointer.assumingMemoryBound(to: UInt64.self)
        while true {
            let holder = cga_load64(word)
            if cga_compare_exchange64(word, holder, tag) == holder { return holder }
        }
    }

    /// Releases the spin lock word at `address` if `tag` holds it.
    public func releaseSpinLock(at address: GuestPhysicalAddress, tag: UInt64) {
        guard let pointer = try? locateAligned(address, 8) else { return }
        // SAFETY: aligned, in range, and the mapping outlives the call.
        _ = cga_compare_exchange64(pointer.assumingMemoryBound(to: UInt64.self), tag, 0)
    }
}
