import GuestMemory
import XenABI

/// Translates guest-virtual addresses through a guest's 4-level page tables, as the
/// hypervisor's copy_from_guest/copy_to_guest do on Xen: a supervisor access (the U bit
/// does not matter), writes need RW at every level, and the hypervisor hole and
/// non-canonical addresses are refused (Xen's `access_ok`).
public struct GuestPageWalker: Sendable {
    public let memory: GuestMemory
    public let root: FrameNumber

    public init(memory: GuestMemory, root: FrameNumber) {
        self.memory = memory
        self.root = root
    }

    /// Whether a guest pointer may be dereferenced by the hypervisor at all.
    public static func isGuestAccessible(_ address: GuestVirtualAddress) -> Bool {
        guard address.isCanonical else { return false }
        let raw = address.rawValue
        return raw < HypervisorVirtualLayout.hypervisorVirtStart || raw >= HypervisorVirtualLayout.hypervisorVirtEnd
    }

    /// The guest-physical address `address` maps to, or EFAULT.
    public func translate(_ address: GuestVirtualAddress, write: Bool) throws(XenError) -> GuestPhysicalAddress {
        guard Self.isGuestAccessible(address) else { throw .EFAULT }
        var table = root
        for level in stride(from: 4, through: 1, by: -1) {
            guard let base = table.address else { throw .EFAULT }
            let entryAddress = GuestPhysicalAddress(base.rawValue + UInt64(address.tableIndex(level: level)) * 8)
            let entry: UInt64
            do { entry = try memory.read(at: entryAddress) } catch { throw .EFAULT }
            guard entry & PTE.present != 0 else { throw .EFAULT }
            if write && entry & PTE.rw == 0 { throw .EFAULT }
            // PV guests have no superpages (Xen forbids PSE above L1).
            if level > 1 && entry & PTE.pse != 0 { throw .EFAULT }
            table = FrameNumber((entry & PTE.addressMask) >> pageShift)
        }
        guard let frameAddress = table.address else { throw .EFAULT }
        return GuestPhysicalAddress(frameAddress.rawValue | address.pageOffset)
    }

    /// The machine address of the L1 entry that maps `address` (Xen's `map_guest_l1e`),
    /// or nil when an upper level is not present.
    public func l1EntryAddress(for address: GuestVirtualAddress) -> GuestPhysicalAddress? {
        guard Self.isGuestAccessible(address) else { return nil }
        var table = root
        for level in stride(from: 4, through: 2, by: -1) {
            guard let base = table.address else { return nil }
            let entryAddress = GuestPhysicalAddress(base.rawValue + UInt64(address.tableIndex(level: level)) * 8)
            guard let entry: UInt64 = try? memory.read(at: entryAddress), entry & PTE.present != 0,
                  entry & PTE.pse == 0 else { return nil }
            table = FrameNumber((entry & PTE.addressMask) >> pageShift)
        }
        guard let base = table.address else { return nil }
        return GuestPhysicalAddress(base.rawValue + UInt64(address.tableIndex(level: 1)) * 8)
    }

    /// A range that runs past the top of the address space is refused, as Xen's
    /// access_ok does, rather than wrapping to address 0. (Handlers may then compute
    /// `address + count` without overflow.)
    static func checkRange(_ address: GuestVirtualAddress, _ count: Int) throws(XenError) {
        guard !address.rawValue.addingReportingOverflow(UInt64(count)).overflow else { throw .EFAULT }
    }

    /// Copies `count` bytes from guest-virtual `address` (copy_from_guest).
    public func read(_ address: GuestVirtualAddress, count: Int) throws(XenError) -> [UInt8] {
        guard count > 0 else { return [] }
        try Self.checkRange(address, count)
        var result: [UInt8] = []
        result.reserveCapacity(count)
        var current = address
        var remaining = count
        while remaining > 0 {
            let chunk = min(remaining, Int(pageSize - current.pageOffset))
            let physical = try translate(current, write: false)
            do { result += try memory.readBytes(at: physical, count: chunk) } catch { throw .EFAULT }
            remaining -= chunk
            current = current.advanced(by: UInt64(chunk))
        }
        return result
    }

    /// Copies bytes to guest-virtual `address` (copy_to_guest). All pages are checked
    /// before any byte is written, so a fault leaves guest memory unchanged.
    public func write(_ bytes: [UInt8], to address: GuestVirtualAddress) throws(XenError) {
        guard !bytes.isEmpty else { return }
        try Self.checkRange(address, bytes.count)
        var pieces: [(GuestPhysicalAddress, Range<Int>)] = []
        var current = address
        var offset = 0
        while offset < bytes.count {
            let chunk = min(bytes.count - offset, Int(pageSize - current.pageOffset))
            pieces.append((try translate(current, write: true), offset..<(offset + chunk)))
            offset += chunk
            current = current.advanced(by: UInt64(chunk))
        }
        for (physical, range) in pieces {
            do { try memory.writeBytes(bytes[range], at: physical) } catch { throw .EFAULT }
        }
    }

    /// Reads a little-endian integer at a guest-virtual address.
    public func read<T: FixedWidthInteger>(_ type: T.Type = T.self, at address: GuestVirtualAddress) throws(XenError) -> T {
        let bytes = try read(address, count: MemoryLayout<T>.size)
        var value: T = 0
        for (index, byte) in bytes.enumerated() { value |= T(truncatingIfNeeded: byte) << (8 * index) }
        return value
    }

    /// Writes a little-endian integer at a guest-virtual address.
    public func write<T: FixedWidthInteger>(_ value: T, at address: GuestVirtualAddress) throws(XenError) {
        var bytes = [UInt8](repeating: 0, count: MemoryLayout<T>.size)
        for index in 0..<bytes.count { bytes[index] = UInt8(truncatingIfNeeded: value >> (8 * index)) }
        try write(bytes, to: address)
    }
}
