/// Typed addresses. Guest-physical addresses, frame numbers and guest-virtual
/// addresses are different things; mixing them up is a classic hypervisor bug, so
/// each is its own type.

/// Size of a page, in bytes (x86-64 4 KiB pages).
public let pageSize: UInt64 = 4096
/// log2(pageSize).
public let pageShift: UInt64 = 12

/// An address in a VM's guest-physical space (what KVM maps with memory slots).
///
/// In Domus a domain's machine frames are its VM's guest-physical frames, so a Xen
/// "machine address" of a domain is a `GuestPhysicalAddress` of its VM.
public struct GuestPhysicalAddress: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    /// The frame that holds this address.
    public var frame: FrameNumber { FrameNumber(rawValue >> pageShift) }
    /// Offset of this address inside its page.
    public var pageOffset: UInt64 { rawValue & (pageSize - 1) }

    /// The address `bytes` further on, or nil on overflow.
    public func advanced(by bytes: UInt64) -> GuestPhysicalAddress? {
        let (sum, overflow) = rawValue.addingReportingOverflow(bytes)
        return overflow ? nil : GuestPhysicalAddress(sum)
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { "gpa 0x" + String(rawValue, radix: 16) }
}

/// A frame number of a VM's guest-physical space: a Xen machine frame (mfn) of the
/// domain. Page-table entries, start_info and grant entries carry these.
public struct FrameNumber: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    /// The first byte of the frame, or nil if the frame number is too large to be an address.
    public var address: GuestPhysicalAddress? {
        rawValue > (UInt64.max >> pageShift) ? nil : GuestPhysicalAddress(rawValue << pageShift)
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { "mfn 0x" + String(rawValue, radix: 16) }
}

/// An address in a guest's virtual address space, translated by the guest's page tables.
public struct GuestVirtualAddress: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }

    /// Whether the address is canonical for 48-bit virtual addresses (bits 63..47 equal).
    public var isCanonical: Bool {
        let top = rawValue >> 47
        return top == 0 || top == 0x1ffff
    }
    /// Offset inside the 4 KiB page.
    public var pageOffset: UInt64 { rawValue & (pageSize - 1) }
    /// The address rounded down to its page.
    public var pageBase: GuestVirtualAddress { GuestVirtualAddress(rawValue & ~(pageSize - 1)) }

    /// Index into the page table of `level` (1 = L1 ... 4 = L4).
    public func tableIndex(level: Int) -> Int {
        Int((rawValue >> (pageShift + 9 * UInt64(level - 1))) & 0x1ff)
    }

    /// The address `bytes` further on (wrapping, as the CPU's linear addresses do).
    public func advanced(by bytes: UInt64) -> GuestVirtualAddress { GuestVirtualAddress(rawValue &+ bytes) }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { "va 0x" + String(rawValue, radix: 16) }
}
